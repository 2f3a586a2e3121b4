"""The log scan: which entities the events and calls of a block range touch, several chunks in flight.

The range is read in chunks (sizes from server/engine/chunks.py): each chunk's
``eth_getLogs`` and its event-less changes (server/engine/silent.py) are
requests of their own, and a window of chunks is in flight at once
(server/engine/pipeline.py). Chunks are saved to the journal in block order,
each with the checkpoint after it, so the checkpoint only ever covers
contiguous finished blocks and a resumed job starts exactly where the saved
work ends. A chunk the provider refuses is split, and later chunks are sized
from what it said.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from server.engine.chunks import ChunkSizer
from server.engine.contracts import EntityKind
from server.engine.journal import SyncJournal, Touch
from server.engine.pipeline import Work, in_order
from server.engine.ranges import BlockRange
from server.engine.silent import SilentChanges
from server.engine.stats import SyncStats
from server.errors import ChainsyncError
from server.metrics import ServerMetrics
from server.retry import GaveUp, RetryPolicy, retry_call
from server.transport.provider_limits import RpcError, range_limit
from server.transport.rpc import JsonRpc, ResponseTooLarge, TransientError

log = logging.getLogger("chainsync.sync")

REFETCH_MALFORMED = RetryPolicy(attempts=3, base_delay_s=0.0, jitter=False)  # an answer that parsed but made no sense
ProgressCallback = Callable[[SyncStats, str], None]


@dataclass(frozen=True)
class Detail:
    """Which touches a scan keeps: the events' from block ``events_from`` on, creating events' only below it
    (their provenance); event-less calls' from block ``calls_from`` on, none below it."""

    events_from: int
    calls_from: int


class Log(msgspec.Struct, rename="camel", gc=False):
    """What the scan reads of an eth_getLogs entry. The transport decodes answers straight into these: the
    rest of each entry (its data, above all) is parsed as JSON but never made into Python objects, and an entry
    without one of these fields is a malformed answer, fetched again. (gc=False: a log refers to nothing that
    could refer back to it, and a dense answer holds tens of thousands.)"""

    address: str
    topics: list[str]
    block_number: str
    transaction_hash: str
    log_index: str
    removed: bool = False


class Gate(Protocol):
    def wait(self, last_block: int) -> Any: ...


class LogScan:
    def __init__(
        self,
        rpc: JsonRpc,
        silent: SilentChanges,
        metrics: ServerMetrics,
        pool: ThreadPoolExecutor,
        ahead: int,
        sizer: ChunkSizer,
        max_logs_bytes: int,
    ) -> None:
        self.rpc = rpc
        self.silent = silent
        self.metrics = metrics
        self.pool = pool
        self.ahead = ahead
        self.sizer = sizer
        self.max_logs_bytes = max_logs_bytes

    def run(
        self,
        rng: BlockRange,
        by_address: dict[str, EntityKind],
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
        gate: Gate,
        detail: Detail,
        last_sent: threading.Event,
    ) -> None:
        """Scans from the checkpoint to rng.to_block, saving each chunk's touches in block order; a chunk's
        work waits on the gate first (``gate.wait(last block)``: the job's window must be recorded).

        ``detail`` says which touches are kept (a full sync reads every entity anyway: it needs the details of
        its reorg window only). ``last_sent`` is set once the last chunk is on its way (or there is none)."""
        scanned_to = int(journal.checkpoint.get("scannedTo", rng.from_block - 1))
        counted_to = max(scanned_to, int(journal.checkpoint.get("eventsTo", -1)))  # events counted up to here
        stats.events_found = journal.event_count()
        stats.blocks_done = scanned_to - rng.from_block + 1
        if scanned_to >= rng.to_block:
            last_sent.set()
            return
        log.info("scan started", extra={"blocks": f"{scanned_to + 1}..{rng.to_block}", "chunk": self.sizer.size})
        stats.scanning()
        chunks: list[tuple[int, int]] = []
        items = self._chunk_works(
            scanned_to + 1,
            rng.to_block,
            list(by_address),
            by_address,
            stats,
            chunks,
            gate,
            detail,
            last_sent,
            counted_to,
        )
        for n, ((events, found), *calls) in enumerate(in_order(self.pool, items, self.ahead)):
            first, last = chunks[n]
            stats.events_found += found
            journal.checkpoint.update(scannedTo=last, chunk=self.sizer.size, events=stats.events_found)
            journal.save_scan(events + _calls_not_named(events, calls))
            stats.blocks_done += last - first + 1
            self.metrics.scanned(last - first + 1, found)
            progress(stats, f"Scanned blocks {rng.from_block}..{last} of ..{rng.to_block}")

    def _chunk_works(
        self,
        start: int,
        last: int,
        addresses: list[str],
        by_address: dict[str, EntityKind],
        stats: SyncStats,
        chunks: list[tuple[int, int]],
        gate: Gate,
        detail: Detail,
        last_sent: threading.Event,
        counted_to: int,
    ) -> Iterator[tuple[Work, ...]]:
        """Per chunk, in block order: its events (those of blocks after counted_to counted) and the pieces of its
        event-less calls from detail.calls_from on (sized when the chunk is made), all run at once."""
        while start <= last:
            end = self.sizer.end_of(start, last)
            chunks.append((start, end))

            def gated(work: Work, last: int = end) -> Work:
                def run() -> Any:
                    gate.wait(last)
                    return work()

                return run

            def events(first: int = start, stop: int = end) -> tuple[list[Touch], int]:
                return self._touches(first, stop, addresses, by_address, stats, detail.events_from, counted_to)

            calls = self.silent.works(max(start, detail.calls_from), end, by_address)
            if end == last:
                last_sent.set()  # (it is submitted as it is handed over)
            yield tuple(gated(work) for work in (events, *calls))
            start = end + 1

    def _touches(
        self,
        start: int,
        end: int,
        addresses: list[str],
        by_address: dict[str, EntityKind],
        stats: SyncStats,
        detail_from: int,
        counted_to: int,
    ) -> tuple[list[Touch], int]:
        """The touches of the logs of exactly start..end (as log_touches keeps them) and how many events
        there were after block counted_to, in as many requests as the provider wants (each answer's logs are
        let go once read: a dense range split many times is never held whole)."""
        touches: list[Touch] = []
        found = 0
        while start <= end:
            stop = min(end, start + self.sizer.size - 1)
            try:
                part = self._logs_of(start, stop, addresses)
            except (RpcError, ResponseTooLarge) as err:
                limit = range_limit(err) if isinstance(err, RpcError) else None
                if isinstance(err, RpcError) and limit is None:
                    raise
                suggested = limit.suggested_blocks if limit else None
                smaller = self.sizer.refused(start, stop - start + 1, suggested, err)
                if limit and limit.stated_cap:  # the server's next jobs start within it
                    self.rpc.endpoints.get(self.rpc.urls[0]).learned_logs_range(limit.stated_cap)
                stats.range_splits += 1
                log.info(
                    "eth_getLogs range refused; splitting",
                    extra={"blocks": f"{start}..{stop}", "next_size": smaller, "suggested": suggested},
                )
                self.metrics.range_split("eth_getLogs")
                continue
            self.sizer.answered(len(part))
            kept, events = log_touches(part, by_address, detail_from, counted_to)
            touches += kept
            found += events
            del part
            start = stop + 1
        return touches, found

    def _logs_of(self, start: int, end: int, addresses: list[str]) -> list[Log]:
        """The logs, fetched again (a few times) while the node's answers parse but make no sense."""
        try:
            return retry_call(lambda _: self._get_logs(start, end, addresses), REFETCH_MALFORMED)
        except GaveUp:
            raise ChainsyncError("RPC_BAD_RESPONSE", "the node kept answering malformed eth_getLogs results") from None

    def _get_logs(self, start: int, end: int, addresses: list[str]) -> list[Log]:
        logs = self.rpc.call(
            "eth_getLogs",
            [{"fromBlock": hex(start), "toBlock": hex(end), "address": addresses}],
            max_response_bytes=self.max_logs_bytes,
            result_type=list[Log],
        )
        for number in {entry.block_number for entry in logs}:  # a dense answer: thousands of logs, few blocks
            if not start <= int(number, 16) <= end:
                raise TransientError(f"eth_getLogs for {start}..{end} returned a log of block {number}")
        return logs


def _calls_not_named(events: list[Touch], calls: list[list[Touch]]) -> list[Touch]:
    """The calls' touches but those of an entity an event names in the same block: that touch says it already
    (every use of a touch asks which entities a block touched), and a dense block has thousands of both."""
    named = {(t.kind, t.entity_id, t.block) for t in events}
    return [t for piece in calls for t in piece if (t.kind, t.entity_id, t.block) not in named]


def log_touches(
    logs: list[Log], by_address: dict[str, EntityKind], detail_from: int = 0, counted_to: int = -1
) -> tuple[list[Touch], int]:
    """The entities the kinds' events name, one touch per entity and block (with how many of the block's
    events named it, and the provenance of its creating event), and how many events of the kinds there were
    after block counted_to. Below block detail_from only the creating events' touches are kept.

    A dense answer holds thousands of logs of a few blocks, contracts and entities: each address's kind, each
    block number and each entity id is worked out once per answer, not once per log."""
    events_of: dict[tuple[str, str, int], int] = {}  # (kind, id topic, block) -> events naming the entity
    created: dict[tuple[str, str, int], dict[str, Any]] = {}  # the same key -> its creating event's provenance
    kinds: dict[str, tuple[str, dict[str, tuple[str, int]], str] | None] = {}  # address as written -> its kind
    blocks: dict[str, int] = {}  # blockNumber as written -> the number
    found = 0
    for entry in logs:
        address = entry.address
        if address not in kinds:
            kind = by_address.get(address) or by_address.get(address.lower())
            kinds[address] = (kind.name, kind.topics, kind.created_topic) if kind is not None else None
        known, topics = kinds[address], entry.topics
        if known is None or not topics or entry.removed:
            continue
        name, kind_topics, created_topic = known
        event = kind_topics.get(topics[0])
        if event is None:
            continue
        number = entry.block_number
        block = blocks.get(number)
        if block is None:
            block = blocks[number] = int(number, 16)
        if block > counted_to:
            found += 1
        creating = topics[0] == created_topic
        if block < detail_from and not creating:
            continue
        key = (name, topics[event[1]], block)
        events_of[key] = events_of.get(key, 0) + 1
        if creating:
            log_index = int(entry.log_index, 16)
            created[key] = {
                "blockNumber": str(block),
                "transactionHash": entry.transaction_hash,
                "logIndex": log_index,
            }
    touches = [
        Touch(kind, int(entity, 16), block, n, created.get((kind, entity, block)))
        for (kind, entity, block), n in events_of.items()
    ]
    return touches, found
