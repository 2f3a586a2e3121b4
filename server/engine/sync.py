"""The sync engine: which blocks to read, and reading them.

Owns: the range rules of design.md (``resolve_range``), the log scan over the
platform's contracts in chunks (``scan_logs``), and reading each touched
entity's state at ``to_block`` through its getter in JSON-RPC batches
(``read_entities``). Knows nothing of jobs or stores: it reports progress and
hands records to the callbacks it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.engine.contracts import Deployment, EntityKind
from server.errors import ChainsyncError, invalid_argument
from server.transport.rpc import JsonRpc, RangeLimit, ResponseTooLarge, RpcError, TransientError, range_limit

if TYPE_CHECKING:
    from server.metrics import ServerMetrics

log = logging.getLogger("chainsync.sync")

DEFAULT_BLOCKS_BACK = 1000
GETTER_PAGE = 200  # entities read per JSON-RPC batch round (split into arrays of 100)
MAX_BLOCKS_PER_BATCH = 100  # blocks fetched per round when scanning transactions


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


def resolve_range(request: dict[str, Any], head: int, earliest: int, confirmations: int) -> BlockRange:
    """The inclusive block range a request asks for, given the chain head.

    ``blocksBack = N``: to = head - confirmations, from = max(earliest, to - N).
    ``isFullSync``: from the earliest deployment block to head - confirmations.
    ``fromBlock``/``toBlock``: as given, checked against the head.
    """
    safe_head = head - confirmations
    if safe_head < 0:
        raise ChainsyncError(
            "NOT_ENOUGH_CONFIRMATIONS",
            f"the chain head is block {head}, fewer than the {confirmations} confirmations asked for",
        )
    if "fromBlock" in request or "toBlock" in request:
        to_block = int(request.get("toBlock", safe_head))
        from_block = int(request.get("fromBlock", earliest))
        if to_block > safe_head:
            raise invalid_argument(
                "toBlock",
                f"{to_block} is past the confirmed head {safe_head} (head {head}, {confirmations} confirmations)",
                reason="INVALID_RANGE",
            )
        if from_block > to_block:
            if request.get("incremental"):
                return BlockRange(to_block + 1, to_block)  # already up to date: an empty range
            raise invalid_argument("fromBlock", f"{from_block} is after toBlock {to_block}", reason="INVALID_RANGE")
        return BlockRange(from_block, to_block)
    if request.get("isFullSync"):
        return BlockRange(min(earliest, safe_head), safe_head)
    blocks_back = int(request.get("blocksBack", DEFAULT_BLOCKS_BACK))
    return BlockRange(max(min(earliest, safe_head), safe_head - blocks_back), safe_head)


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
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.blocks_done / elapsed
        left = 1 - self.percent() / 100
        done = self.percent() / 100
        return {
            "blocksTotal": self.blocks_total,
            "blocksDone": self.blocks_done,
            "eventsFound": self.events_found,
            "recordsTotal": self.records_total,
            "recordsDone": self.records_done,
            "rangeSplits": self.range_splits,
            "reorgs": self.reorgs,
            "blocksPerSecond": round(rate, 1),
            "etaSeconds": round(elapsed * left / done, 1) if done > 0 else 0.0,
        }


class SyncJournal(Protocol):
    """Where the engine saves its work as it goes, so that a job can resume.

    ``checkpoint`` holds ``scannedTo`` (the last block whose logs are saved),
    ``chunk`` (the adaptive range size) and ``hashes`` (block number -> hash of
    the last chunk ends, to notice a reorg). ``save_scan`` saves one chunk's
    touches with it.
    """

    checkpoint: dict[str, Any]

    def save_scan(self, touches: list[Touch]) -> None: ...

    def event_count(self) -> int: ...

    def rewind(self, from_block: int) -> None:
        """Forgets touches at or after from_block and every record read (a reorg replaced them)."""

    def touched(self, kind: str) -> dict[int, Any]: ...

    def done_ids(self, kind: str) -> set[str]: ...

    def save_records(self, kind: str, records: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class Touch:
    """An entity named in block ``block`` by the event at ``log_index``, or by a call (log_index -1).

    ``created`` is the provenance when the event is the entity's creating event.
    """

    kind: str
    entity_id: int
    block: int
    log_index: int = -1
    created: dict[str, Any] | None = None


@dataclass(frozen=True)
class SyncOptions:
    log_chunk_blocks: int = 2_000  # first eth_getLogs range
    log_chunk_max: int = 50_000  # growth stops here
    grow_after: int = 3  # successes in a row before the range doubles
    max_logs_per_chunk: int = 10_000  # a chunk with more logs halves the next range
    max_logs_bytes: int = 16 * 1024 * 1024  # a larger eth_getLogs answer is dropped and its range halved
    silent_changes: str = "auto"  # auto | trace | blocks | off: how event-less changes are found
    reorg_retries: int = 3
    keep_hashes: int = 64  # chunk-end hashes kept in the checkpoint


SILENT_STRATEGIES = ("auto", "trace", "blocks", "off")
ProgressCallback = Callable[[SyncStats, str], None]


class SyncEngine:
    def __init__(
        self,
        rpc: JsonRpc,
        deployment: Deployment,
        kinds: dict[str, EntityKind],
        options: SyncOptions = SyncOptions(),
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.rpc = rpc
        self.metrics = metrics if metrics is not None else rpc.metrics
        self.deployment = deployment
        self.kinds = kinds
        self.options = options
        self._silent = options.silent_changes
        self._trace_size = options.log_chunk_max  # trace_filter range, shrunk to what the node accepts

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

    # -- the log scan ---------------------------------------------------------

    def _get_logs(self, start: int, end: int, addresses: list[str]) -> list[dict[str, Any]]:
        logs = self.rpc.call(
            "eth_getLogs",
            [{"fromBlock": hex(start), "toBlock": hex(end), "address": addresses}],
            max_response_bytes=self.options.max_logs_bytes,
        )
        if not isinstance(logs, list):
            raise TransientError("eth_getLogs answered something that is not a list")
        for log in logs:
            if not start <= int(log["blockNumber"], 16) <= end:
                raise TransientError(f"eth_getLogs for {start}..{end} returned a log of block {log['blockNumber']}")
        return logs

    def _logs_adaptive(
        self, start: int, end: int, addresses: list[str], state: dict[str, int], stats: SyncStats
    ) -> tuple[int, list[dict[str, Any]]]:
        """Logs of start..x for the largest x <= end the provider accepts; (x, logs)."""
        while True:
            stop = min(end, start + state["size"] - 1)
            try:
                logs = self._retrying(lambda stop=stop: self._get_logs(start, stop, addresses))
            except (RpcError, ResponseTooLarge) as err:
                limit = RangeLimit(None) if isinstance(err, ResponseTooLarge) else range_limit(err)
                if limit is None:
                    raise
                asked = stop - start + 1
                smaller = (
                    limit.suggested_blocks if limit.suggested_blocks and limit.suggested_blocks < asked else asked // 2
                )
                if smaller < 1:
                    raise ChainsyncError(
                        "RESULT_TOO_LARGE",
                        f"the provider refuses even one block ({start}) of logs: {err}",
                    ) from err
                state["size"], state["streak"] = smaller, 0
                if limit.suggested_blocks:
                    state["max"] = min(state["max"], smaller)
                stats.range_splits += 1
                log.info(
                    "eth_getLogs range refused; splitting",
                    extra={"blocks": f"{start}..{stop}", "next_size": smaller, "suggested": limit.suggested_blocks},
                )
                self.metrics.range_split("eth_getLogs")
                continue
            if len(logs) > self.options.max_logs_per_chunk:
                state["size"], state["streak"] = max(1, state["size"] // 2), 0
            elif len(logs) < self.options.max_logs_per_chunk // 2:
                state["streak"] += 1
                if state["streak"] >= self.options.grow_after and state["size"] < state["max"]:
                    state["size"], state["streak"] = min(state["max"], state["size"] * 2), 0
            return stop, logs

    def _retrying(self, fetch: Callable[[], Any], attempts: int = 3) -> Any:
        """A malformed answer (TransientError raised after parsing) is fetched again a few times."""
        for attempt in range(attempts):
            try:
                return fetch()
            except TransientError:
                if attempt + 1 == attempts:
                    raise ChainsyncError(
                        "RPC_BAD_RESPONSE",
                        "the node kept answering malformed eth_getLogs results",
                    ) from None
        raise AssertionError("unreachable")

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
        state = {
            "size": int(journal.checkpoint.get("chunk", self.options.log_chunk_blocks)),
            "streak": 0,
            "max": self.options.log_chunk_max,
        }

        def fetch(start: int) -> tuple[int, list[dict[str, Any]], str]:
            stop, logs = self._logs_adaptive(start, rng.to_block, addresses, state, stats)
            return stop, logs, self.block_hash(stop)

        start = scanned_to + 1
        if start > rng.to_block:
            return
        log.info("scan started", extra={"blocks": f"{start}..{rng.to_block}", "chunk": state["size"]})
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chainsync-prefetch") as prefetch:
            # copy_context: lines logged in the helper thread carry the job's log context too
            pending = prefetch.submit(copy_context().run, fetch, start)
            while pending is not None:
                stop, logs, stop_hash = pending.result()
                pending = prefetch.submit(copy_context().run, fetch, stop + 1) if stop < rng.to_block else None
                try:
                    touches = self._log_touches(logs, by_address, stats)
                    events = len(touches)
                    touches += self.silent_touches(start, stop, by_address)
                    hashes = dict(journal.checkpoint.get("hashes", {}))
                    hashes[str(stop)] = stop_hash
                    journal.checkpoint.update(
                        scannedTo=stop,
                        chunk=state["size"],
                        hashes=dict(sorted(hashes.items(), key=lambda kv: int(kv[0]))[-self.options.keep_hashes :]),
                    )
                    journal.save_scan(touches)
                    stats.blocks_done += stop - start + 1
                    self.metrics.scanned(stop - start + 1, events)
                    progress(stats, f"Scanned blocks {rng.from_block}..{stop} of ..{rng.to_block}")
                except BaseException:
                    if pending is not None:
                        pending.cancel()
                    raise
                start = stop + 1

    @staticmethod
    def _log_touches(logs: list[dict[str, Any]], by_address: dict[str, EntityKind], stats: SyncStats) -> list[Touch]:
        touches: list[Touch] = []
        for log in logs:
            kind = by_address.get(log["address"].lower())
            topics = log["topics"]
            if kind is None or log.get("removed") or not topics or topics[0] not in kind.topics:
                continue
            block, log_index = int(log["blockNumber"], 16), int(log["logIndex"], 16)
            created = None
            if topics[0] == kind.created_topic:
                created = {"blockNumber": str(block), "transactionHash": log["transactionHash"], "logIndex": log_index}
            touches.append(Touch(kind.name, int(topics[1], 16), block, log_index, created))
            stats.events_found += 1
        return touches

    # -- event-less changes ---------------------------------------------------

    def silent_touches(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Touch]:
        """Entities changed by successful calls to id-taking mutators in start..stop (events or not)."""
        if self._silent == "off":
            return []
        if self._silent in ("auto", "trace"):
            try:
                return self._touches_from_traces(start, stop, by_address)
            except RpcError as err:
                if self._silent == "trace":
                    raise ChainsyncError(
                        "TRACE_UNSUPPORTED",
                        f"the node does not serve trace_filter ({err.message}); use CHAINSYNC_SILENT_CHANGES=blocks",
                    ) from err
                self._silent = "blocks"  # auto: this node has no traces; scan blocks from now on
        return self._touches_from_blocks(start, stop, by_address)

    def _mutator_touch(self, to: str | None, data: str | None, block: int, by_address) -> Touch | None:
        kind = by_address.get((to or "").lower())
        if kind is None or not data or len(data) < 74 or data[:10] not in kind.mutator_selectors:
            return None
        return Touch(kind.name, int(data[10:74], 16), block)

    def _traces(self, start: int, stop: int, addresses: list[str]) -> list[dict[str, Any]]:
        """trace_filter over start..stop, split into the ranges the node accepts."""
        traces: list[dict[str, Any]] = []
        while start <= stop:
            end = min(stop, start + self._trace_size - 1)
            try:
                traces += (
                    self.rpc.call(
                        "trace_filter", [{"fromBlock": hex(start), "toBlock": hex(end), "toAddress": addresses}]
                    )
                    or []
                )
            except RpcError as err:
                limit = range_limit(err)
                asked = end - start + 1
                if limit is None or asked == 1:
                    raise
                self._trace_size = min(asked // 2, limit.suggested_blocks or asked) or 1
                log.info(
                    "trace_filter range refused; splitting",
                    extra={"blocks": f"{start}..{end}", "next_size": self._trace_size},
                )
                self.metrics.range_split("trace_filter")
                continue
            start = end + 1
        return traces

    def _touches_from_traces(self, start: int, stop: int, by_address) -> list[Touch]:
        candidates: dict[str, list[Touch]] = {}
        for trace in self._traces(start, stop, list(by_address)):
            action = trace.get("action", {})
            if trace.get("type") != "call" or trace.get("error") or action.get("callType") not in ("call", None):
                continue
            touch = self._mutator_touch(action.get("to"), action.get("input"), trace["blockNumber"], by_address)
            if touch:
                candidates.setdefault(trace["transactionHash"], []).append(touch)
        return self._successful(candidates)

    def _touches_from_blocks(self, start: int, stop: int, by_address) -> list[Touch]:
        candidates: dict[str, list[Touch]] = {}
        for first in range(start, stop + 1, MAX_BLOCKS_PER_BATCH):
            numbers = range(first, min(stop, first + MAX_BLOCKS_PER_BATCH - 1) + 1)
            blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
            for number, block in zip(numbers, blocks):
                if block is None:
                    raise ChainsyncError("BLOCK_NOT_FOUND", f"the node has no block {number}")
                for tx in block["transactions"]:
                    touch = self._mutator_touch(tx.get("to"), tx.get("input"), number, by_address)
                    if touch:
                        candidates.setdefault(tx["hash"], []).append(touch)
        return self._successful(candidates)

    def _successful(self, candidates: dict[str, list[Touch]]) -> list[Touch]:
        """The touches of the transactions that succeeded (a reverted call changed nothing)."""
        if not candidates:
            return []
        hashes = list(candidates)
        receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        return [t for h, r in zip(hashes, receipts) if r and r.get("status") == "0x1" for t in candidates[h]]

    # -- reading state at to_block ------------------------------------------

    def count(self, kind: EntityKind, block: int) -> int:
        return int(self.rpc.call(*kind.counter_call(self.deployment.addresses[kind.contract], block)), 16)

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
                self._save_page(kind, page, answers, created, journal)
                stats.records_done += len(page)
                self.metrics.records(kind.name, len(page))
                progress(stats, f"Read {stats.records_done} of {stats.records_total} records at block {block}")

    @staticmethod
    def _save_page(
        kind: EntityKind, page: list[int], answers: list[Any], created: dict[int, Any], journal: SyncJournal
    ) -> None:
        records = []
        for entity_id, raw in zip(page, answers):
            record = kind.decode_record(entity_id, raw)
            record["created"] = created.get(entity_id)
            records.append(record)
        journal.save_records(kind.name, records)

    def read_all(
        self,
        rng: BlockRange,
        kind_names: list[str],
        full: bool,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
    ) -> dict[str, int]:
        plan: dict[str, tuple[list[int], dict[int, Any]]] = {}
        counts: dict[str, int] = {}
        stats.records_done = 0
        for name in kind_names:
            created = journal.touched(name)
            ids = set(created)
            if full:
                ids |= set(range(1, self.count(self.kinds[name], rng.to_block) + 1))
            done = journal.done_ids(name)
            counts[name] = len(ids)
            stats.records_done += len(done)
            plan[name] = (sorted(i for i in ids if str(i) not in done), created)
        stats.records_total = sum(counts.values())
        log.info(
            "scan done; reading records",
            extra={"events": stats.events_found, "records": stats.records_total, "block": rng.to_block},
        )
        progress(stats, f"Reading {stats.records_total} records at block {rng.to_block}")
        for name in kind_names:
            ids, created = plan[name]
            self.read_entities(self.kinds[name], ids, created, rng.to_block, stats, progress, journal)
        return counts

    # -- reorgs -------------------------------------------------------------

    def first_reorged_block(self, rng: BlockRange, journal: SyncJournal) -> int | None:
        """The first block to sync again if the chain under the checkpoints changed, else None."""
        kept = {int(b): h for b, h in journal.checkpoint.get("hashes", {}).items()}
        if not kept:
            return None
        now = self.block_hashes(sorted(kept))
        changed = sorted(b for b in kept if now[b] != kept[b])
        if not changed:
            return None
        unchanged_before = [b for b in kept if b < changed[0] and now[b] == kept[b]]
        return max(unchanged_before) + 1 if unchanged_before else rng.from_block

    def run(
        self,
        rng: BlockRange,
        kind_names: list[str],
        full: bool,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
    ) -> dict[str, int]:
        """Scans the range and saves every touched entity's state at rng.to_block. Returns counts per kind.

        Resumable: work the journal already holds is not done again. When the
        chain under the scanned range changed by the end (a reorg), the changed
        part is scanned again and every record read again, up to reorg_retries times.
        """
        stats.blocks_total = rng.size
        for _ in range(self.options.reorg_retries + 1):
            self.scan_logs(rng, kind_names, stats, progress, journal)
            counts = self.read_all(rng, kind_names, full, stats, progress, journal)
            fork = self.first_reorged_block(rng, journal)
            if fork is None:
                return counts
            stats.reorgs += 1
            log.warning("the chain changed under the scanned range; syncing again", extra={"from_block": fork})
            journal.rewind(fork)
            progress(stats, f"The chain changed at or after block {fork}: syncing {fork}..{rng.to_block} again")
        raise ChainsyncError(
            "CHAIN_UNSTABLE",
            f"the chain kept reorganising under blocks {rng.from_block}..{rng.to_block}; "
            "sync again with more confirmations",
        )
