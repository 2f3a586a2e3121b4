"""What the engine hands over as it works: touches, and the journal that saves them so a job can resume.

A ``Touch`` is an entity named in a block by an event or a call. The engine
knows nothing of jobs or stores: it saves each chunk's touches and each page
of records through a ``SyncJournal`` (the job's, server/jobs/sync_job.py),
whose ``checkpoint`` says how far the work got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Touch:
    """An entity named in block ``block`` by the event at ``log_index``, or by a call (log_index -1).

    ``created`` is the provenance when the event is the entity's creating event.
    """

    kind: str
    entity_id: int
    block: int
    log_index: int = -1
    created: dict[str, Any] | None = None


class SyncJournal(Protocol):
    """Where the engine saves its work as it goes, so that a job can resume.

    ``checkpoint`` holds ``scannedTo`` (the last block whose logs are saved),
    ``chunk`` (the adaptive range size) and ``hashes`` (block number -> hash of
    the last chunk ends, to notice a reorg). ``save_scan`` saves one chunk's
    touches with it.
    """

    checkpoint: dict[str, Any]

    def save_scan(self, touches: list[Touch]) -> None: ...

    def event_count(self) -> int: ...

    def rewind(self, from_block: int) -> None:
        """Forgets touches at or after from_block and every record read (a reorg replaced them)."""

    def touched(self, kind: str) -> dict[int, Any]: ...

    def done_ids(self, kind: str) -> set[str]: ...

    def save_records(self, kind: str, records: list[dict[str, Any]]) -> None: ...
