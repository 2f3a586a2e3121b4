"""Reorgs: noticing that the chain under a synced range changed, and where.

The engine keeps the hashes of the blocks it scanned up to (the last
``keep`` chunk ends) in the job's checkpoint; when the job has read
everything it compares them with the chain: the first block after the last
unchanged one is where it syncs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def remember_hash(checkpoint: dict[str, Any], block: int, block_hash: str, keep: int) -> dict[str, str]:
    """The checkpoint's hashes with this block's added, keeping the ``keep`` highest blocks."""
    hashes = dict(checkpoint.get("hashes", {}))
    hashes[str(block)] = block_hash
    return dict(sorted(hashes.items(), key=lambda kv: int(kv[0]))[-keep:])


def first_changed_block(
    checkpoint: dict[str, Any], hashes_now: Callable[[list[int]], dict[int, str]], range_start: int
) -> int | None:
    """The first block to sync again if the chain under the kept hashes changed, else None."""
    kept = {int(b): h for b, h in checkpoint.get("hashes", {}).items()}
    if not kept:
        return None
    now = hashes_now(sorted(kept))
    changed = sorted(b for b in kept if now[b] != kept[b])
    if not changed:
        return None
    unchanged_before = [b for b in kept if b < changed[0] and now[b] == kept[b]]
    return max(unchanged_before) + 1 if unchanged_before else range_start
