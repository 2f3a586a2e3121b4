"""Block ranges: which blocks a request asks for, and the limits on what it may ask.

Owns the range rules of design.md (``resolve_range``) and the bounds the
servicer enforces and the bridge documents (``MAX_BLOCKS_BACK``,
``MAX_CONFIRMATIONS``, ``MAX_BLOCK``), so that each is written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.errors import ChainsyncError, invalid_argument

DEFAULT_BLOCKS_BACK = 1000
MAX_BLOCKS_BACK = 100_000_000
MAX_CONFIRMATIONS = 10_000
MAX_BLOCK = 2**63 - 1  # fromBlock / toBlock


@dataclass(frozen=True)
class BlockRange:
    from_block: int  # inclusive
    to_block: int  # inclusive

    @property
    def size(self) -> int:
        return max(0, self.to_block - self.from_block + 1)

    def chunks(self, size: int) -> Iterator[BlockRange]:
        start = self.from_block
        while start <= self.to_block:
            end = min(self.to_block, start + size - 1)
            yield BlockRange(start, end)
            start = end + 1


def safe_head(head: int, confirmations: int) -> int:
    """The newest block a sync may read: ``confirmations`` behind the head."""
    if head - confirmations < 0:
        raise ChainsyncError(
            "NOT_ENOUGH_CONFIRMATIONS",
            f"the chain head is block {head}, fewer than the {confirmations} confirmations asked for",
        )
    return head - confirmations


def resolve_range(request: dict[str, Any], head: int, earliest: int, confirmations: int) -> BlockRange:
    """The inclusive block range a request asks for, given the chain head.

    ``blocksBack = N``: to = head - confirmations, from = max(earliest, to - N).
    ``isFullSync``: from the earliest deployment block to head - confirmations.
    ``fromBlock``/``toBlock``: as given, checked against the head.
    """
    top = safe_head(head, confirmations)
    if "fromBlock" in request or "toBlock" in request:
        to_block = int(request.get("toBlock", top))
        from_block = int(request.get("fromBlock", earliest))
        if to_block > top:
            raise invalid_argument(
                "toBlock",
                f"{to_block} is past the confirmed head {top} (head {head}, {confirmations} confirmations)",
                reason="INVALID_RANGE",
            )
        if from_block > to_block:
            raise invalid_argument("fromBlock", f"{from_block} is after toBlock {to_block}", reason="INVALID_RANGE")
        return BlockRange(from_block, to_block)
    if request.get("isFullSync"):
        return BlockRange(min(earliest, top), top)
    blocks_back = int(request.get("blocksBack", DEFAULT_BLOCKS_BACK))
    return BlockRange(max(min(earliest, top), top - blocks_back), top)
