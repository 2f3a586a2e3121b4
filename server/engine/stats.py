"""A job's live figures, from work really done.

The field names are those of the protobuf ``JobStats`` message: the servicer
builds the message from ``as_dict()`` and the bridge's JSON follows the
message, so the shape is defined once, at the API edge (jobs.proto).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncStats:
    blocks_total: int = 0
    blocks_done: int = 0
    events_found: int = 0
    records_total: int = 0
    records_done: int = 0
    range_splits: int = 0
    reorgs: int = 0
    started: float = field(default_factory=time.monotonic)

    def percent(self) -> int:
        """Share of real work done: the log scan weighs 70, the getter reads 30."""
        scan = self.blocks_done / self.blocks_total if self.blocks_total else 1.0
        reads = self.records_done / self.records_total if self.records_total else 0.0
        return min(99, int(70 * scan + 30 * reads))

    def as_dict(self) -> dict[str, Any]:
        """The figures under JobStats' field names, with the rate and the estimated time left."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        done = self.percent() / 100
        return {
            "blocks_total": self.blocks_total,
            "blocks_done": self.blocks_done,
            "events_found": self.events_found,
            "records_total": self.records_total,
            "records_done": self.records_done,
            "range_splits": self.range_splits,
            "reorgs": self.reorgs,
            "blocks_per_second": round(self.blocks_done / elapsed, 1),
            "eta_seconds": round(elapsed * (1 - done) / done, 1) if done > 0 else 0.0,
        }
