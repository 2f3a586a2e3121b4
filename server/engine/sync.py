"""The sync engine: reading a plan's block range into records.

Owns the order of the work, each step in as few round trips as it allows:

1. setup: chain id and the head block in one batch (with the cursor's block,
   when an incremental sync continues from one), then the plan
   (server/jobs/sync_job.py);
2. the window: the hash of each block of the job's reorg window
   (server/engine/reorgs.py), while the scan runs and, when the plan needs
   them, the counters at toBlock are read;
3. the log scan, several chunks in flight, saved in block order
   (server/engine/scan.py);
4. each entity's state at toBlock, several getter batches in flight
   (server/engine/reads.py), a full sync's from the moment its counters are
   known;
5. the check that the chain under the window did not move meanwhile; if it
   did, what still exists is kept and the work goes on from the fork.

Every read must come from the chain the check compares with. When toBlock is
the head the setup saw (no confirmations), its hash is known from the first
round trip: state is read at that hash (EIP-1898: ``{"blockHash": ...}``, so
the reads are that block's whatever happens after), the logs need only come
after the setup, and the check runs beside the reads: three round trips in a
row for a whole sync. Otherwise toBlock's hash is first known from the window:
the window's logs and every state read wait for it, and the check comes after
the reads (docs/decisions.md).

Knows nothing of jobs or stores: it reports progress and hands touches and
records to the journal it is given (server/engine/journal.py). How many
requests fly at once is the endpoint's window (server/transport/endpoints.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from server.engine.chunks import ChunkSizer
from server.engine.contracts import Deployment, EntityKind
from server.engine.journal import SyncJournal
from server.engine.ranges import BlockRange, safe_head
from server.engine.reads import EarlyReads, StateReader
from server.engine.reorgs import Cursor, Reorg, fork_point, window_start
from server.engine.scan import Detail, LogScan
from server.engine.silent import SilentChanges, TraceSupport
from server.engine.stats import SyncStats
from server.errors import ChainsyncError
from server.metrics import NO_METRICS, ServerMetrics
from server.transport.provider_limits import RpcError
from server.transport.rpc import JsonRpc

log = logging.getLogger("chainsync.sync")


@dataclass(frozen=True)
class SyncOptions:
    log_chunk_blocks: int = 2_000  # first eth_getLogs range
    log_chunk_max: int = 50_000  # growth stops here
    grow_after: int = 3  # successes in a row before the range doubles
    max_logs_per_chunk: int = 10_000  # a chunk with more logs halves the next range
    max_logs_bytes: int = 16 * 1024 * 1024  # a larger eth_getLogs answer is dropped and its range halved
    silent_changes: str = "auto"  # auto | trace | blocks | off: how event-less changes are found
    concurrency: int = 8  # work items in flight (chunks, getter batches); the endpoint's window decides requests
    reorg_retries: int = 3  # reorgs under one job before it gives up (CHAIN_UNSTABLE)
    reorg_window: int = 128  # blocks up to toBlock whose hashes (and touches) a job keeps: CHAINSYNC_REORG_WINDOW


@dataclass(frozen=True)
class SyncPlan:
    """What one job reads: the blocks it scans, what it reads at their end, and what earlier results listed."""

    range: BlockRange
    full: bool = False  # read every id 1..counter at toBlock
    confirmations: int = 0
    # Earlier results' entities touched at or after this block are read again at toBlock (or listed as dropped).
    reread_from: int | None = None
    window_floor: int = 0  # the job's window does not start below this block (where its records begin)
    after: str | None = None  # the cursor it continues from: a reorg below its range moves its start down
    reorg: Reorg | None = None  # the branch switch this job handles
    inherited: dict[int, str] = field(default_factory=dict)  # window hashes known good from the cursor
    to_block_hash: str | None = None  # toBlock's hash as the setup saw it (the head): state is read at it

    @property
    def state_at(self) -> str | dict[str, str]:
        """The JSON-RPC block parameter state at toBlock is read at: its hash when known (EIP-1898)."""
        return {"blockHash": self.to_block_hash} if self.to_block_hash else hex(self.range.to_block)


class ChainHead(NamedTuple):
    """What the setup round trip found."""

    chain_id: int
    head: int
    head_hash: str
    cursor_hash: str | None  # the hash of the cursor's block now (None: no cursor, or the chain lacks it)


class ChainMoved(Exception):
    """The chain no longer has a block of the job's window: the scan stops, the run handles the reorg."""


@dataclass(frozen=True)
class WindowGate:
    """What a chunk's work waits for before reading the blocks of the job's window: their hashes, recorded."""

    recording: Future  # record_window's (window, first block gone or None)
    start: int  # the window's first block
    pinned: bool = False  # toBlock's hash came with the setup: no read waits for the window

    def wait(self, last_block: int | None = None) -> tuple[dict[int, str], int | None]:
        """For a chunk ending at last_block (None: whatever): the window once recorded; ChainMoved if a block is gone."""
        if last_block is not None and (last_block < self.start or self.pinned):
            return {}, None
        window, gone = self.recording.result()
        if gone is not None:
            raise ChainMoved(gone)
        return window, gone


@dataclass(frozen=True)
class SyncOutcome:
    plan: SyncPlan  # as it ended (a reorg moves the range)
    counts: dict[str, int]  # records per kind
    dropped: dict[str, list[str]]  # ids earlier results listed that do not exist at toBlock
    to_block_hash: str
    window_from: int  # the lowest block whose hash (and touches) the job keeps


ProgressCallback = Callable[[SyncStats, str], None]


class SyncEngine:
    def __init__(
        self,
        rpc: JsonRpc,
        deployment: Deployment,
        kinds: dict[str, EntityKind],
        options: SyncOptions = SyncOptions(),
        metrics: ServerMetrics = NO_METRICS,
        trace_support: TraceSupport | None = None,
    ) -> None:
        self.rpc = rpc
        self.metrics = metrics
        self.deployment = deployment
        self.kinds = kinds
        self.options = options
        ahead = max(1, options.concurrency)
        self.pool = ThreadPoolExecutor(max_workers=2 * ahead + 2, thread_name_prefix="chainsync-work")
        support = trace_support if trace_support is not None else TraceSupport()
        silent = SilentChanges(rpc, options.silent_changes, options.log_chunk_max, support, metrics)
        known = rpc.endpoints.get(rpc.urls[0]).logs_range or options.log_chunk_max  # what a refusal said
        sizer = ChunkSizer(
            min(options.log_chunk_blocks, known), min(options.log_chunk_max, known), options.grow_after,
            options.max_logs_per_chunk,
        )  # fmt: skip
        self.scan = LogScan(rpc, silent, metrics, self.pool, ahead, sizer, options.max_logs_bytes)
        self.reader = StateReader(rpc, deployment, kinds, metrics, self.pool, ahead)

    def close(self) -> None:
        """Stops the engine's threads (work still queued is dropped; requests in flight end on their own)."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- chain facts --------------------------------------------------------

    def setup(self, check_block: int | None = None) -> ChainHead:
        """Chain id, head and the hash of check_block in one round trip; CHAIN_MISMATCH when the node is not
        on the deployment file's chain."""
        calls = [("eth_chainId", []), ("eth_getBlockByNumber", ["latest", False])]
        if check_block is not None:
            calls.append(("eth_getBlockByNumber", [hex(check_block), False]))
        answers = self.rpc.batch(calls)
        chain_id, latest = int(answers[0], 16), answers[1]
        if not isinstance(latest, dict) or "number" not in latest or "hash" not in latest:
            raise ChainsyncError("RPC_BAD_RESPONSE", "the node answered eth_getBlockByNumber(latest) without a block")
        expected = self.deployment.chain_id
        if expected is not None and int(expected) != chain_id:
            raise ChainsyncError(
                "CHAIN_MISMATCH", f"the node is on chain {chain_id} but the deployment file is for chain {expected}"
            )
        checked = (answers[2] or {}).get("hash") if check_block is not None else None
        return ChainHead(chain_id, int(latest["number"], 16), latest["hash"], checked)

    def head(self) -> int:
        return int(self.rpc.call("eth_blockNumber", []), 16)

    def hashes_now(self, numbers: list[int]) -> dict[int, str | None]:
        """The chain's hash of each block now (None for a block it does not have), the batches at once."""
        blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {n: (b or {}).get("hash") for n, b in zip(numbers, blocks)}

    def block_hash(self, number: int) -> str:
        found = self.hashes_now([number])[number]
        if found is None:
            raise ChainsyncError("BLOCK_NOT_FOUND", f"the node has no block {number}")
        return found

    def continue_after(self, cursor: Cursor, safe_head: int, cursor_hash_now: str | None) -> SyncPlan:
        """The plan of an incremental sync from a cursor: after it, or from the fork if the chain switched.

        What the cursor's chain of results listed from blocks now dropped, or past the new toBlock (a
        shorter chain), is read again at the new toBlock or listed as dropped.
        """
        known = {cursor.to_block: cursor_hash_now}  # asked in the setup round trip
        fork = fork_point(cursor.window, self.hashes_now, self.options.reorg_window, known)
        start = cursor.to_block + 1 if fork is None else fork
        reorg = None if fork is None else Reorg(fork, cursor.to_block - fork + 1)
        reread_from = min(start, safe_head + 1)
        rng = BlockRange(start, safe_head) if start <= safe_head else BlockRange(safe_head + 1, safe_head)
        return SyncPlan(
            rng,
            reread_from=reread_from if reread_from <= cursor.to_block else None,
            window_floor=cursor.window_from,
            reorg=reorg,
            inherited={b: h for b, h in cursor.window.items() if b < reread_from},
        )

    def record_window(self, plan: SyncPlan, journal: SyncJournal) -> tuple[dict[int, str], int | None]:
        """The hash of every block of the job's window, saved before its logs are read; and the first
        block of the window the chain no longer has (None when it has them all)."""
        to_block = plan.range.to_block
        window = {b: h for b, h in {**plan.inherited, **journal.window()}.items() if b <= to_block}
        start = window_start(to_block, self.options.reorg_window, plan.window_floor)
        missing = [b for b in range(start, to_block + 1) if b not in window]
        now = self.hashes_now(missing) if missing else {}
        window.update({b: h for b, h in now.items() if h is not None})
        window = {b: h for b, h in window.items() if b >= start}
        journal.save_window(window)
        gone = min((b for b, h in now.items() if h is None), default=None)
        if gone is None and plan.to_block_hash and window.get(to_block) != plan.to_block_hash:
            gone = start  # the chain switched since the setup, somewhere in the window: all of it is suspect
        return window, gone

    def _after_reorg(self, plan: SyncPlan, window: dict[int, str], fork: int, journal: SyncJournal) -> SyncPlan:
        """The plan once the chain under the job's window switched at fork (or lost blocks from fork on):
        keep what still exists, sync again from the fork."""
        rng = plan.range
        to_block = rng.to_block
        if self.hashes_now([to_block])[to_block] is None:  # the chain is now shorter than toBlock
            to_block = max(fork - 1, safe_head(self.head(), plan.confirmations))
        start, reread_from = rng.from_block, plan.reread_from
        if plan.after is not None and fork < rng.from_block:  # into blocks an earlier result covered
            start = fork
            reread_from = fork if reread_from is None else min(reread_from, fork)
        fork_block = min(fork, plan.reorg.fork_block) if plan.reorg else fork
        top = max(rng.to_block, fork_block + plan.reorg.dropped_blocks - 1) if plan.reorg else rng.to_block
        again = fork
        if plan.full and to_block < rng.to_block:  # a shorter chain: the window moved over blocks whose touches
            # a full sync did not keep
            again = min(fork, window_start(to_block, self.options.reorg_window, plan.window_floor))
        rewind_from = max(again, start)
        # below the window it had, a full sync counted its events without keeping them: that count stays
        kept = self._detail(plan, window_start(rng.to_block, self.options.reorg_window, plan.window_floor))
        journal.rewind(rewind_from, max(rewind_from, kept.events_from) if plan.full else rewind_from)
        return replace(
            plan,
            range=BlockRange(start, to_block) if start <= to_block else BlockRange(to_block + 1, to_block),
            reread_from=reread_from,
            reorg=Reorg(fork_block, top - fork_block + 1),
            inherited={b: h for b, h in window.items() if b < fork},
            to_block_hash=None,
        )

    # -- the whole plan -----------------------------------------------------

    def _counters_meanwhile(self, plan: SyncPlan, kind_names: list[str], gate: WindowGate) -> Future | None:
        """The counters at toBlock, when the plan needs them: at once at toBlock's hash, else as soon as the
        window is recorded (state read by number before the hashes could come from a branch that the check
        at the end never sees)."""
        if not plan.full and plan.reread_from is None:
            return None

        def counts() -> dict[str, int]:
            if not gate.pinned:
                gate.wait()
            return self.reader.counts(kind_names, plan.state_at)

        return self.pool.submit(copy_context().run, counts)

    def _read(
        self,
        plan: SyncPlan,
        kind_names: list[str],
        counters: Future | None,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
        early: EarlyReads | None,
    ) -> tuple[dict[str, int], dict[str, list[str]]]:
        counts = counters.result() if counters is not None else None
        wanted = {}
        for name in kind_names:
            every = set(range(1, counts[name] + 1)) if plan.full and counts else set()
            earlier = journal.earlier_touches(name, plan.reread_from) if plan.reread_from is not None else set()
            wanted[name] = (every, earlier)
        return self.reader.read(plan.range.to_block, plan.state_at, wanted, counts, stats, progress, journal, early)

    def _fork(self, window: dict[int, str]) -> int | None:
        """The first block of the window the chain switched at since it was recorded (None: it did not)."""
        return fork_point(window, self.hashes_now, self.options.reorg_window)

    def _detail(self, plan: SyncPlan, window_from: int) -> Detail:
        """Which touches the scan keeps (server/engine/scan.py): all of them, but a full sync reads every id at
        toBlock anyway and needs them for its window (from block window_from) only, and its creating events'
        (their provenance). Below the window its events are counted, not kept: a rewind there (a shorter chain
        moves the window down) keeps the count of the blocks below the fork, which the new branch shares, and
        the scan does not count them again (_after_reorg)."""
        if not plan.full:
            return Detail(plan.range.from_block, plan.range.from_block)
        return Detail(max(plan.range.from_block, window_from), window_from)

    def run(
        self, plan: SyncPlan, kind_names: list[str], stats: SyncStats, progress: ProgressCallback, journal: SyncJournal
    ) -> SyncOutcome:
        """Scans the plan's range and saves every entity to report at its toBlock.

        Resumable: work the journal already holds is not done again. When the chain under the job's
        window changed by the end (a reorg), it keeps what still exists: syncs again from the fork
        (up to reorg_retries times), reading again what the dropped blocks had touched.
        """
        by_address = {self.deployment.addresses[self.kinds[k].contract].lower(): self.kinds[k] for k in kind_names}
        for _ in range(self.options.reorg_retries + 1):
            stats.blocks_total = plan.range.size
            journal.save_plan(plan)
            # The window is recorded while the chunks below it are scanned; unless toBlock's hash came with the
            # setup, a chunk in it waits for it (its logs must be read after the hashes the check compares with).
            recording = self.pool.submit(copy_context().run, self.record_window, plan, journal)
            start = window_start(plan.range.to_block, self.options.reorg_window, plan.window_floor)
            gate = WindowGate(recording, start, pinned=plan.to_block_hash is not None)
            counters = self._counters_meanwhile(plan, kind_names, gate)
            last_sent, early = threading.Event(), None
            if plan.full and counters is not None:
                early = self.reader.read_early(plan.state_at, kind_names, counters, journal, last_sent)
            check = None
            try:
                detail = self._detail(plan, gate.start)
                self.scan.run(plan.range, by_address, stats, progress, journal, gate, detail, last_sent)
                window, fork = gate.wait()
                if gate.pinned:  # the reads are toBlock's whatever the chain does now: check beside them
                    check = self.pool.submit(copy_context().run, self._fork, window)
                counts, dropped = self._read(plan, kind_names, counters, stats, progress, journal, early)
            except ChainMoved:
                window, fork = recording.result()
            except RpcError as err:  # a getter of an entity the chain no longer has, a block it lost: it moved?
                window, fork = recording.result()
                fork = fork if fork is not None else self._fork(window)  # now: a check started earlier is stale
                if fork is None and plan.to_block_hash is not None:  # a node without EIP-1898, perhaps
                    log.warning("state read at toBlock's hash failed; reading at its number", extra={"error": str(err)})
                    plan = replace(plan, to_block_hash=None)
                    continue
                if fork is None:
                    raise
            finally:
                if early is not None:
                    early.cancel()
            if fork is None:
                fork = check.result() if check is not None else self._fork(window)
            if fork is None:
                to_hash = window.get(plan.range.to_block) or self.block_hash(plan.range.to_block)
                return SyncOutcome(plan, counts, dropped, to_hash, min(window, default=plan.range.from_block))
            stats.reorgs += 1
            log.warning("the chain changed under the job's blocks; syncing again", extra={"from_block": fork})
            plan = self._after_reorg(plan, window, fork, journal)
            progress(
                stats,
                f"The chain changed at block {fork}: syncing {plan.range.from_block}..{plan.range.to_block} again",
            )
        raise ChainsyncError(
            "CHAIN_UNSTABLE",
            f"the chain kept reorganising under blocks {plan.range.from_block}..{plan.range.to_block}; "
            "sync again with more confirmations",
        )
