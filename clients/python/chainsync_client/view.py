"""SyncView: the copy of the records an application keeps, equal to the chain after every result.

The rule of docs/reorgs.md: apply the results in order, upserting every record
by its id and deleting every id in ``dropped``; a full sync's result (one that
continues from no cursor) replaces the view. After each result the view holds
exactly the entities that exist at that result's ``to_block``.

    view = SyncView()
    view.sync(client)  # a full sync the first time, then incremental syncs after the view's cursor
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainsync_client._base import DEFAULT_WAIT_S, Client
from chainsync_client.errors import ReorgTooDeep
from chainsync_client.models import RECORD_KINDS, Cursor, SyncResult


def _empty() -> dict[str, dict[str, dict[str, Any]]]:
    return {kind: {} for kind in RECORD_KINDS}


@dataclass
class SyncView:
    """Per kind, id -> record, built only from results; ``cursor`` is the last result applied (None: none)."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=_empty)
    cursor: Cursor | None = None
    type: str = "blockchain_sync"  # the syncs ``sync`` runs

    @property
    def to_block(self) -> int | None:
        """The block the view equals the chain at (None before the first result)."""
        return self.cursor.to_block if self.cursor else None

    def apply(self, result: SyncResult) -> None:
        """Applies a whole result (not a page): a full sync's replaces the view; an incremental's must
        continue from the view's cursor (ValueError otherwise: a result was skipped or is another's)."""
        if any(len(getattr(result, kind)) != result.totals.get(kind, 0) for kind in RECORD_KINDS):
            raise ValueError(f"the result of job {result.job_id} is a page: apply the whole result")
        if result.after is None:
            self.records = _empty()
        elif self.cursor is None or result.after != self.cursor.job_id:
            stands = self.cursor.job_id if self.cursor else "no result"
            raise ValueError(
                f"the result of job {result.job_id} continues from job {result.after}, but this view stands at "
                f"{stands}: start the sync with after=view.cursor"
            )
        for kind in RECORD_KINDS:
            held = self.records[kind]
            for record in getattr(result, kind):
                held[record["id"]] = record
            for entity_id in result.dropped.get(kind, []):
                held.pop(entity_id, None)
        self.cursor = result.cursor

    def sync(self, client: Client, *, timeout: float = DEFAULT_WAIT_S) -> SyncResult:
        """Runs the next sync and applies it: a full sync for an empty view, else an incremental after its
        cursor, and after REORG_TOO_DEEP a full sync that replaces the view. Returns the result applied;
        raises what ``wait`` raises for any other failure (the view is then unchanged)."""
        if self.cursor is None:
            job = client.start_sync(full=True, type=self.type)
        else:
            job = client.start_sync(type=self.type, after=self.cursor)
        try:
            client.wait(job.id, timeout=timeout)
        except ReorgTooDeep:
            job = client.start_sync(full=True, type=self.type)
            client.wait(job.id, timeout=timeout)
        result = client.result(job.id)
        self.apply(result)
        return result
