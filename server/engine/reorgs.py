"""Reorgs: where a chain that changed under synced blocks forked, and what must be read again.

Every job records the hash of each block of its *window*: the last
``CHAINSYNC_REORG_WINDOW`` blocks up to its toBlock (fewer when its records
start later: a chain shorter than the window, or a range with no cursor
before it). A block's hash commits to all its ancestors, so one unchanged
hash proves every block below it unchanged; the fork is the block after the
highest recorded block whose hash the chain still has. A chain that kept none
of them changed deeper than the window: ``REORG_TOO_DEEP``.

Two places use it: an incremental sync continuing from a cursor (the job
whose result the client applied last), and a job checking, once it has read
everything, that the chain under its own range did not move meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from server.errors import ChainsyncError

HashesNow = Callable[[list[int]], dict[int, str | None]]  # block -> the chain's hash now (None: no such block)


@dataclass(frozen=True)
class Cursor:
    """Where a client's view stands: the job whose result it applied last, and that job's window."""

    job_id: str
    to_block: int
    to_block_hash: str
    window: dict[int, str]  # block -> hash, every block from window_from to to_block
    window_from: int  # the lowest block whose hash and touches that job kept


@dataclass(frozen=True)
class Reorg:
    """A branch switch handled: blocks fork_block.. of the old branch were replaced (or are gone)."""

    fork_block: int
    dropped_blocks: int


def window_start(to_block: int, window: int, floor: int) -> int:
    """The first block of a job's window: ``window`` blocks up to to_block, not below floor."""
    return max(floor, to_block - window + 1)


def fork_point(
    window: dict[int, str], hashes_now: HashesNow, window_size: int, known: dict[int, str | None] | None = None
) -> int | None:
    """The first block that differs from the recorded window, or None when none does.

    ``known``: hashes of the chain now already asked for (the setup round trip asks for the cursor's).
    REORG_TOO_DEEP when not even the window's lowest block is unchanged.
    """
    if not window:
        return None
    top = max(window)
    now_top = known[top] if known and top in known else hashes_now([top])[top]
    if now_top == window[top]:
        return None  # the newest recorded block stands, so does everything below it
    blocks = sorted(window)
    now = hashes_now(blocks)
    unchanged = [b for b in blocks if now.get(b) == window[b]]
    if not unchanged:
        raise ChainsyncError(
            "REORG_TOO_DEEP",
            f"the chain changed at or below block {blocks[0]}, deeper than the {window_size}-block reorg window "
            "(CHAINSYNC_REORG_WINDOW) this server keeps: run a full sync (isFullSync) and replace your view with it",
            {"windowFrom": str(blocks[0]), "window": str(window_size)},
        )
    return max(unchanged) + 1
