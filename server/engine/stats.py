"""A job's live figures, from work really done.

The field names are those of the protobuf ``JobStats`` message: the servicer
builds the message from ``as_dict()`` and the bridge's JSON follows the
message, so the shape is defined once, at the API edge (jobs.proto).

Progress counts only finished work: blocks whose logs are saved (the scan
saves chunks in block order, so blocks in flight do not count) and records
saved. The rate and the time left come from the phase in progress, measured
since it began in this run: the scan's blocks per second while it scans, then
the reads' records per second.
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
    scan_began: tuple[float, int] | None = None  # (when, blocks_done then) of this run's scan
    reads_began: tuple[float, int] | None = None  # (when, records_done then) of this run's reads

    def percent(self) -> int:
        """Share of real work done: the log scan weighs 70, the getter reads 30."""
        scan = self.blocks_done / self.blocks_total if self.blocks_total else 1.0
        reads = self.records_done / self.records_total if self.records_total else 0.0
        return min(99, int(70 * scan + 30 * reads))

    def scanning(self) -> None:
        self.scan_began = (time.monotonic(), self.blocks_done)

    def reading(self) -> None:
        self.reads_began = (time.monotonic(), self.records_done)

    def _rate(self, began: tuple[float, int] | None, done: int) -> float:
        if began is None:
            return 0.0
        return (done - began[1]) / max(time.monotonic() - began[0], 1e-6)

    def as_dict(self) -> dict[str, Any]:
        """The figures under JobStats' field names, with the scan's rate and the estimated time left."""
        blocks_per_s = self._rate(self.scan_began, self.blocks_done)
        records_per_s = self._rate(self.reads_began, self.records_done)
        if self.reads_began is not None and records_per_s > 0:
            eta = (self.records_total - self.records_done) / records_per_s
        elif blocks_per_s > 0:
            eta = (self.blocks_total - self.blocks_done) / blocks_per_s
        else:
            eta = 0.0  # not known yet
        return {
            "blocks_total": self.blocks_total,
            "blocks_done": self.blocks_done,
            "events_found": self.events_found,
            "records_total": self.records_total,
            "records_done": self.records_done,
            "range_splits": self.range_splits,
            "reorgs": self.reorgs,
            "blocks_per_second": round(blocks_per_s, 1),
            "eta_seconds": round(max(0.0, eta), 1),
        }
