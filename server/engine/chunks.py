"""How many blocks one eth_getLogs request asks for, adapting to the provider (ethereum-etl's batch executor).

The size starts at ``CHAINSYNC_LOG_CHUNK``, doubles after a few answers in a
row that were comfortably small, up to ``CHAINSYNC_LOG_CHUNK_MAX``, halves
after an answer with too many logs, and on a provider's refusal takes the
range the provider suggests (which then also caps growth), else halves.
Several chunks are in flight at once, so it is told about answers from
several threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from server.errors import ChainsyncError


@dataclass
class ChunkSizer:
    size: int  # blocks of the next request
    max_size: int  # growth stops here
    grow_after: int = 3  # comfortable answers in a row before the size doubles
    max_logs: int = 10_000  # an answer with more logs halves the size
    streak: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def end_of(self, start: int, last: int) -> int:
        """The last block of the request that starts at start (never past last)."""
        return min(last, start + self.size - 1)

    def answered(self, logs: int) -> None:
        """An answer with this many logs came back."""
        with self._lock:
            self._answered(logs)

    def _answered(self, logs: int) -> None:
        if logs > self.max_logs:
            self.size, self.streak = max(1, self.size // 2), 0
        elif logs < self.max_logs // 2:
            self.streak += 1
            if self.streak >= self.grow_after and self.size < self.max_size:
                self.size, self.streak = min(self.max_size, self.size * 2), 0

    def refused(self, start: int, asked: int, suggested: int | None, why: object) -> int:
        """The provider refused ``asked`` blocks from start; the next size (a suggestion also caps growth)."""
        with self._lock:
            return self._refused(start, asked, suggested, why)

    def _refused(self, start: int, asked: int, suggested: int | None, why: object) -> int:
        smaller = suggested if suggested and suggested < asked else asked // 2
        if smaller < 1:
            raise ChainsyncError("RESULT_TOO_LARGE", f"the provider refuses even one block ({start}) of logs: {why}")
        self.size, self.streak = smaller, 0
        if suggested:
            self.max_size = min(self.max_size, smaller)
        return smaller
