"""The sync engine: reading a block range into records.

Owns the order of the work: the log scan over the kinds' contracts, chunk by
chunk (sizes from server/engine/chunks.py, event-less changes from
server/engine/silent.py), then each touched entity's state at ``to_block``
through its getter in JSON-RPC batches, then the check that the chain under
the range did not change meanwhile (server/engine/reorgs.py). Knows nothing of
jobs or stores: it reports progress and hands touches and records to the
journal it is given (server/engine/journal.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field, replace
from typing import Any

from server.engine.chunks import ChunkSizer
from server.engine.contracts import Deployment, EntityKind
from server.engine.journal import SyncJournal, Touch
from server.engine.ranges import BlockRange, safe_head
from server.engine.reorgs import Cursor, Reorg, fork_point, window_start
from server.engine.silent import SilentChanges, TraceSupport
from server.engine.stats import SyncStats
from server.errors import ChainsyncError
from server.metrics import NO_METRICS, ServerMetrics
from server.retry import GaveUp, RetryPolicy, retry_call
from server.transport.provider_limits import RpcError, range_limit
from server.transport.rpc import JsonRpc, ResponseTooLarge, TransientError

log = logging.getLogger("chainsync.sync")

GETTER_PAGE = 200  # entities read per JSON-RPC batch round (split into arrays of 100)
REFETCH_MALFORMED = RetryPolicy(attempts=3, base_delay_s=0.0, jitter=False)  # an answer that parsed but made no sense


@dataclass(frozen=True)
class SyncOptions:
    log_chunk_blocks: int = 2_000  # first eth_getLogs range
    log_chunk_max: int = 50_000  # growth stops here
    grow_after: int = 3  # successes in a row before the range doubles
    max_logs_per_chunk: int = 10_000  # a chunk with more logs halves the next range
    max_logs_bytes: int = 16 * 1024 * 1024  # a larger eth_getLogs answer is dropped and its range halved
    silent_changes: str = "auto"  # auto | trace | blocks | off: how event-less changes are found
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
        support = trace_support if trace_support is not None else TraceSupport()
        self.silent = SilentChanges(rpc, options.silent_changes, options.log_chunk_max, support, metrics)

    # -- chain facts --------------------------------------------------------

    def head(self) -> int:
        return int(self.rpc.call("eth_blockNumber", []), 16)

    def check_chain(self) -> int:
        chain_id = int(self.rpc.call("eth_chainId", []), 16)
        expected = self.deployment.chain_id
        if expected is not None and int(expected) != chain_id:
            raise ChainsyncError(
                "CHAIN_MISMATCH",
                f"the node is on chain {chain_id} but the deployment file is for chain {expected}",
            )
        return chain_id

    def block_hashes(self, numbers: list[int]) -> dict[int, str]:
        blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        missing = [n for n, b in zip(numbers, blocks) if b is None]
        if missing:
            raise ChainsyncError("BLOCK_NOT_FOUND", f"the node has no block {missing[0]}")
        return {n: b["hash"] for n, b in zip(numbers, blocks)}

    def block_hash(self, number: int) -> str:
        return self.block_hashes([number])[number]

    def count(self, kind: EntityKind, block: int) -> int:
        return int(self.rpc.call(*kind.counter_call(self.deployment.addresses[kind.contract], block)), 16)

    # -- the log scan ---------------------------------------------------------

    def _get_logs(self, start: int, end: int, addresses: list[str]) -> list[dict[str, Any]]:
        logs = self.rpc.call(
            "eth_getLogs",
            [{"fromBlock": hex(start), "toBlock": hex(end), "address": addresses}],
            max_response_bytes=self.options.max_logs_bytes,
        )
        if not isinstance(logs, list):
            raise TransientError("eth_getLogs answered something that is not a list")
        for entry in logs:
            if not start <= int(entry["blockNumber"], 16) <= end:
                raise TransientError(f"eth_getLogs for {start}..{end} returned a log of block {entry['blockNumber']}")
        return logs

    def _logs_of(self, start: int, end: int, addresses: list[str]) -> list[dict[str, Any]]:
        """The logs, fetched again (a few times) while the node's answers parse but make no sense."""
        try:
            return retry_call(lambda _: self._get_logs(start, end, addresses), REFETCH_MALFORMED)
        except GaveUp:
            raise ChainsyncError("RPC_BAD_RESPONSE", "the node kept answering malformed eth_getLogs results") from None

    def _logs_adaptive(
        self, start: int, end: int, addresses: list[str], sizer: ChunkSizer, stats: SyncStats
    ) -> tuple[int, list[dict[str, Any]]]:
        """Logs of start..x for the largest x <= end the provider accepts; (x, logs)."""
        while True:
            stop = sizer.end_of(start, end)
            try:
                logs = self._logs_of(start, stop, addresses)
            except (RpcError, ResponseTooLarge) as err:
                limit = range_limit(err) if isinstance(err, RpcError) else None
                if isinstance(err, RpcError) and limit is None:
                    raise
                suggested = limit.suggested_blocks if limit else None
                smaller = sizer.refused(start, stop - start + 1, suggested, err)
                stats.range_splits += 1
                log.info(
                    "eth_getLogs range refused; splitting",
                    extra={"blocks": f"{start}..{stop}", "next_size": smaller, "suggested": suggested},
                )
                self.metrics.range_split("eth_getLogs")
                continue
            sizer.answered(len(logs))
            return stop, logs

    def scan_logs(
        self, rng: BlockRange, kind_names: list[str], stats: SyncStats, progress: ProgressCallback, journal: SyncJournal
    ) -> None:
        """Finds the entities the range's events and calls name, chunk by chunk, saving each chunk.

        The next chunk is fetched (in one helper thread) while this one is decoded and saved,
        so the node and the decoding work at the same time.
        """
        by_address = {self.deployment.addresses[self.kinds[k].contract].lower(): self.kinds[k] for k in kind_names}
        addresses = list(by_address)
        scanned_to = int(journal.checkpoint.get("scannedTo", rng.from_block - 1))
        stats.events_found = journal.event_count()
        stats.blocks_done = scanned_to - rng.from_block + 1
        size = int(journal.checkpoint.get("chunk", self.options.log_chunk_blocks))
        sizer = ChunkSizer(size, self.options.log_chunk_max, self.options.grow_after, self.options.max_logs_per_chunk)

        def fetch(start: int) -> tuple[int, list[dict[str, Any]]]:
            return self._logs_adaptive(start, rng.to_block, addresses, sizer, stats)

        start = scanned_to + 1
        if start > rng.to_block:
            return
        log.info("scan started", extra={"blocks": f"{start}..{rng.to_block}", "chunk": sizer.size})
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chainsync-prefetch") as prefetch:
            # copy_context: lines logged in the helper thread carry the job's log context too
            pending = prefetch.submit(copy_context().run, fetch, start)
            while pending is not None:
                stop, logs = pending.result()
                pending = prefetch.submit(copy_context().run, fetch, stop + 1) if stop < rng.to_block else None
                try:
                    touches = log_touches(logs, by_address)
                    stats.events_found += len(touches)
                    events = len(touches)
                    touches += self.silent.touches(start, stop, by_address)
                    journal.checkpoint.update(scannedTo=stop, chunk=sizer.size)
                    journal.save_scan(touches)
                    stats.blocks_done += stop - start + 1
                    self.metrics.scanned(stop - start + 1, events)
                    progress(stats, f"Scanned blocks {rng.from_block}..{stop} of ..{rng.to_block}")
                except BaseException:
                    if pending is not None:
                        pending.cancel()
                    raise
                start = stop + 1

    # -- reading state at to_block ------------------------------------------

    def read_entities(
        self,
        kind: EntityKind,
        ids: list[int],
        created: dict[int, Any],
        block: int,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
    ) -> None:
        """Reads each entity's getter at ``block`` in batches, saving each page of records."""
        address = self.deployment.addresses[kind.contract]
        pages = [ids[start : start + GETTER_PAGE] for start in range(0, len(ids), GETTER_PAGE)]

        def fetch(page: list[int]) -> list[Any]:
            return self.rpc.batch([kind.getter_call(address, i, block) for i in page])

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chainsync-prefetch") as prefetch:
            answers_of = [prefetch.submit(copy_context().run, fetch, pages[0])] if pages else []
            for n, page in enumerate(pages):
                answers = answers_of[n].result()
                if n + 1 < len(pages):  # the node answers the next page while this one is decoded
                    answers_of.append(prefetch.submit(copy_context().run, fetch, pages[n + 1]))
                records = [dict(kind.decode_record(i, raw), created=created.get(i)) for i, raw in zip(page, answers)]
                journal.save_records(kind.name, records)
                stats.records_done += len(page)
                self.metrics.records(kind.name, len(page))
                progress(stats, f"Read {stats.records_done} of {stats.records_total} records at block {block}")

    def read_all(
        self, plan: SyncPlan, kind_names: list[str], stats: SyncStats, progress: ProgressCallback, journal: SyncJournal
    ) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Reads every entity to report at plan.range.to_block; (records per kind, ids that no longer exist).

        To report: those the scan touched, every id for a full sync, and what earlier results listed from
        blocks at or after plan.reread_from (dropped by a reorg, or past this toBlock): each read again,
        or listed as dropped when its id is past the counter at toBlock.
        """
        to_block = plan.range.to_block
        todo: dict[str, tuple[list[int], dict[int, Any]]] = {}
        counts: dict[str, int] = {}
        dropped: dict[str, list[str]] = {}
        stats.records_done = 0
        for name in kind_names:
            created = journal.touched(name)
            ids = set(created)
            earlier = journal.earlier_touches(name, plan.reread_from) - ids if plan.reread_from is not None else set()
            if plan.full or earlier:
                count = self.count(self.kinds[name], to_block)
                ids |= set(range(1, count + 1)) if plan.full else {i for i in earlier if i <= count}
                dropped[name] = [str(i) for i in sorted(earlier) if i > count]
            done = journal.done_ids(name)
            counts[name] = len(ids)
            stats.records_done += len(done)
            todo[name] = (sorted(i for i in ids if str(i) not in done), created)
        stats.records_total = sum(counts.values())
        log.info(
            "scan done; reading records",
            extra={"events": stats.events_found, "records": stats.records_total, "block": to_block},
        )
        progress(stats, f"Reading {stats.records_total} records at block {to_block}")
        for name in kind_names:
            ids, created = todo[name]
            self.read_entities(self.kinds[name], ids, created, to_block, stats, progress, journal)
        return counts, {k: v for k, v in dropped.items() if v}

    # -- the chain under the range ------------------------------------------

    def hashes_now(self, numbers: list[int]) -> dict[int, str | None]:
        """The chain's hash of each block now; None for a block it does not have."""
        blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {n: (b or {}).get("hash") for n, b in zip(numbers, blocks)}

    def continue_after(self, cursor: Cursor, safe_head: int) -> SyncPlan:
        """The plan of an incremental sync from a cursor: after it, or from the fork if the chain switched.

        What the cursor's chain of results listed from blocks now dropped, or past the new toBlock (a
        shorter chain), is read again at the new toBlock or listed as dropped.
        """
        fork = fork_point(cursor.window, self.hashes_now, self.options.reorg_window)
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
        return window, min((b for b, h in now.items() if h is None), default=None)

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
        journal.rewind(max(fork, start))
        return replace(
            plan,
            range=BlockRange(start, to_block) if start <= to_block else BlockRange(to_block + 1, to_block),
            reread_from=reread_from,
            reorg=Reorg(fork_block, top - fork_block + 1),
            inherited={b: h for b, h in window.items() if b < fork},
        )

    # -- the whole plan -----------------------------------------------------

    def run(
        self, plan: SyncPlan, kind_names: list[str], stats: SyncStats, progress: ProgressCallback, journal: SyncJournal
    ) -> SyncOutcome:
        """Scans the plan's range and saves every entity to report at its toBlock.

        Resumable: work the journal already holds is not done again. When the chain under the job's
        window changed by the end (a reorg), it keeps what still exists: syncs again from the fork
        (up to reorg_retries times), reading again what the dropped blocks had touched.
        """
        for _ in range(self.options.reorg_retries + 1):
            stats.blocks_total = plan.range.size
            journal.save_plan(plan)
            window, fork = self.record_window(plan, journal)
            if fork is None:
                try:
                    self.scan_logs(plan.range, kind_names, stats, progress, journal)
                    counts, dropped = self.read_all(plan, kind_names, stats, progress, journal)
                except RpcError:  # a getter of an entity the chain no longer has, a block it lost: it moved?
                    if fork_point(window, self.hashes_now, self.options.reorg_window) is None:
                        raise
                fork = fork_point(window, self.hashes_now, self.options.reorg_window)
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


def log_touches(logs: list[dict[str, Any]], by_address: dict[str, EntityKind]) -> list[Touch]:
    """The entities the kinds' events name, with the provenance of each creating event."""
    touches: list[Touch] = []
    for entry in logs:
        kind = by_address.get(entry["address"].lower())
        topics = entry["topics"]
        if kind is None or entry.get("removed") or not topics or topics[0] not in kind.topics:
            continue
        block, log_index = int(entry["blockNumber"], 16), int(entry["logIndex"], 16)
        created = None
        if topics[0] == kind.created_topic:
            created = {"blockNumber": str(block), "transactionHash": entry["transactionHash"], "logIndex": log_index}
        entity_id = int(topics[kind.topics[topics[0]][1]], 16)
        touches.append(Touch(kind.name, entity_id, block, log_index, created))
    return touches
