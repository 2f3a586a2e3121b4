"""What the engine hands over as it works: touches, and the journal that saves them so a job can resume.

A ``Touch`` is an entity named in a block by an event or a call. The engine
knows nothing of jobs or stores: it saves each chunk's touches and each page
of records through a ``SyncJournal`` (the job's, server/jobs/sync_job.py),
whose ``checkpoint`` says how far the work got.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol


class Touch(NamedTuple):
    """An entity named in block ``block``: by ``events`` of the block's events, or by a call only (0).

    One per entity and block (a dense block names an entity many times). ``created`` is the provenance when
    one of those events is the entity's creating event. (A named tuple: a dense range makes thousands of them,
    and a tuple is the cheapest to make.)
    """

    kind: str
    entity_id: int
    block: int
    events: int = 0
    created: dict[str, Any] | None = None


class SyncJournal(Protocol):
    """Where the engine saves its work as it goes, so that a job can resume.

    ``checkpoint`` holds the plan (range, what to read again, the reorg handled),
    ``scannedTo`` (the last block whose logs are saved), ``events`` (how many
    events the scan found up to there, or up to ``eventsTo`` when a rewind kept
    the count of blocks it scans again) and ``chunk`` (the adaptive range size);
    ``save_scan`` saves one chunk's touches with it.
    """

    checkpoint: dict[str, Any]

    def save_plan(self, plan: Any) -> None:
        """Keeps the plan in the checkpoint (saved with the next write)."""

    def save_scan(self, touches: list[Touch]) -> None: ...

    def window(self) -> dict[int, str]:
        """The block hashes of the job's window saved so far (block -> hash)."""

    def save_window(self, hashes: dict[int, str]) -> None:
        """Replaces the job's window: the hash of each of its blocks."""

    def event_count(self) -> int:
        """How many events the saved scan found."""

    def rewind(self, from_block: int, count_from: int) -> None:
        """Forgets touches and window hashes at or after from_block, and every record read (a reorg replaced
        them); the events counted at or after count_from (>= from_block: the blocks between are the same on
        the new branch, and the scan does not count them again)."""

    def touched(self, kind: str) -> dict[int, Any]:
        """Entity id -> provenance of its creating event (None when not seen), of this job's scan."""

    def earlier_touches(self, kind: str, since: int) -> set[int]:
        """Ids that the results this job continues from listed from blocks at or after since."""

    def done_ids(self, kind: str) -> set[str]: ...

    def save_records(self, kind: str, records: list[dict[str, Any]]) -> None: ...
