"""Reading state at toBlock: each entity to report, through its getter, several pages in flight.

Which entities: those the scan touched, every id 1..counter for a full sync,
and what earlier results listed from blocks the plan reads again (dropped by
a reorg, or past the new toBlock): each read again, or listed as dropped when
its id is past the counter at toBlock (docs/reorgs.md). Getter calls go 100
to a JSON-RPC batch, a window of batches in flight (server/engine/pipeline.py),
each page decoded by the kind's lean decoder and saved in order.

A full sync knows its ids once the counters are read, long before its scan
ends: ``read_early`` reads those pages while the scan's last chunks are in
flight (the scan's requests go first: its last chunk is the job's longest
wait), up to EARLY_RECORDS records held, and ``read`` saves them once the
scan has found each record's creating event (its ``created`` provenance).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError as Cancelled
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from typing import Any

from server.engine.contracts import BlockParam, Deployment, EntityKind
from server.engine.journal import SyncJournal
from server.engine.pipeline import in_order
from server.engine.stats import SyncStats
from server.metrics import ServerMetrics
from server.transport.rpc import MAX_BATCH, JsonRpc

log = logging.getLogger("chainsync.sync")

ProgressCallback = Callable[[SyncStats, str], None]
Page = tuple[str, list[int]]  # a kind and the ids of one getter batch

SAVE_RECORDS = 1_000  # records saved in one transaction at most (fewer, larger writes; a resume redoes at most this)
EARLY_RECORDS = 10_000  # decoded records a full sync's early reads hold while its scan runs (bounds memory)


def pages_of(name: str, ids: list[int]) -> list[Page]:
    return [(name, ids[n : n + MAX_BATCH]) for n in range(0, len(ids), MAX_BATCH)]


class EarlyReads:
    """A full sync's pages, read while its scan runs and handed over in order (see the module docstring).

    Its thread waits until ``start`` is set (the scan has sent its last chunk), plans every id 1..counter not
    saved yet, and reads the pages a window at a time into a bounded queue; ``pages`` is that plan, ``next``
    the next page's records (or the error reading it), ``cancel`` drops the rest (a reorg, a failed scan).
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        start: threading.Event,
        plan: Callable[[], list[Page]],
        read: Callable[[Page], Any],
        ahead: int,
    ):
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=max(1, EARLY_RECORDS // MAX_BATCH))
        self._cancelled = threading.Event()
        self._planned: Future = Future()
        self._pool, self._start, self._plan, self._read, self._ahead = pool, start, plan, read, ahead
        pool.submit(copy_context().run, self._run)

    def pages(self) -> list[Page]:
        return self._planned.result()

    def next(self) -> list[dict[str, Any]]:
        ok, value = self._queue.get()
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        self._cancelled.set()

    def _run(self) -> None:
        try:
            while not self._start.wait(0.05):
                if self._cancelled.is_set():
                    raise Cancelled()
            pages = self._plan()
        except BaseException as exc:  # handed to whoever asks for the plan
            self._planned.set_exception(exc)
            return
        self._planned.set_result(pages)
        results = in_order(self._pool, ((lambda p=p: self._read(p),) for p in pages), self._ahead)
        try:
            for (records,) in results:
                if not self._put((True, records)):
                    return
        except BaseException as exc:  # raised where its page is taken
            self._put((False, exc))
        finally:
            results.close()  # cancels the pages not started

    def _put(self, item: tuple[bool, Any]) -> bool:
        """Waits for room in the queue; False once cancelled."""
        while not self._cancelled.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False


class StateReader:
    def __init__(
        self,
        rpc: JsonRpc,
        deployment: Deployment,
        kinds: dict[str, EntityKind],
        metrics: ServerMetrics,
        pool: ThreadPoolExecutor,
        ahead: int,
    ) -> None:
        self.rpc = rpc
        self.deployment = deployment
        self.kinds = kinds
        self.metrics = metrics
        self.pool = pool
        self.ahead = ahead

    def counts(self, kind_names: list[str], at: BlockParam) -> dict[str, int]:
        """Each kind's counter at block ``at`` (a JSON-RPC block parameter), in one round trip."""
        calls = [self.kinds[n].counter_call(self.deployment.addresses[self.kinds[n].contract], at) for n in kind_names]
        return {name: int(answer, 16) for name, answer in zip(kind_names, self.rpc.batch(calls))}

    def read_early(
        self, at: BlockParam, kind_names: list[str], counters: Future, journal: SyncJournal, start: threading.Event
    ) -> EarlyReads:
        """A full sync's every id 1..counter at block ``at``, read from the moment ``start`` is set while the scan
        runs (``read`` saves them)."""

        def plan() -> list[Page]:
            counts = counters.result()
            pages: list[Page] = []
            for name in kind_names:
                done = journal.done_ids(name)
                pages += pages_of(name, [i for i in range(1, counts[name] + 1) if str(i) not in done])
            return pages

        return EarlyReads(self.pool, start, plan, lambda page: self._page(page, at), self.ahead)

    def _page(self, page: Page, at: BlockParam) -> list[dict[str, Any]]:
        """One page's records, decoded (without their provenance: the scan's to give)."""
        name, ids = page
        kind = self.kinds[name]
        address = self.deployment.addresses[kind.contract]
        answers = self.rpc.batch([kind.getter_call(address, i, at) for i in ids])
        return [kind.decode_record(i, raw) for i, raw in zip(ids, answers)]

    def read(
        self,
        to_block: int,
        at: BlockParam,
        plan: dict[str, tuple[set[int], set[int]]],
        counts: dict[str, int] | None,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
        early: EarlyReads | None = None,
    ) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Reads what plan asks per kind, (ids to read, ids earlier results listed), at to_block (block
        parameter ``at``: its number or its hash).

        ``counts`` are the counters at to_block when known (a full sync, a re-read); ``early``, the pages
        read while the scan ran. Returns the records per kind and the ids that no longer exist."""
        todo: dict[str, list[int]] = {}
        created: dict[str, dict[int, Any]] = {}
        totals: dict[str, int] = {}
        dropped: dict[str, list[str]] = {}
        stats.records_done = 0
        for name, (ids, earlier) in plan.items():
            created[name] = journal.touched(name)
            ids = ids | set(created[name])
            if earlier:
                count = (counts or {})[name]
                ids |= {i for i in earlier if i <= count}
                if gone := [str(i) for i in sorted(earlier) if i > count]:
                    dropped[name] = gone
            done = journal.done_ids(name)
            totals[name] = len(ids)
            stats.records_done += len(done)
            todo[name] = sorted(i for i in ids if str(i) not in done)
        stats.records_total = sum(totals.values())
        log.info(
            "scan done; reading records",
            extra={"events": stats.events_found, "records": stats.records_total, "block": to_block},
        )
        stats.reading()
        progress(stats, f"Reading {stats.records_total} records at block {to_block}")

        def save(kind: str, batch: list[dict[str, Any]]) -> None:
            journal.save_records(kind, batch)
            stats.records_done += len(batch)
            self.metrics.records(kind, len(batch))
            progress(stats, f"Read {stats.records_done} of {stats.records_total} records at block {to_block}")

        kind, batch = "", []  # records of one kind waiting to be saved together
        for (name, page), records in self._records(todo, at, early):
            if batch and (name != kind or len(batch) >= SAVE_RECORDS):
                save(kind, batch)
                batch = []
            kind = name
            batch += [dict(r, created=created[name].get(i)) for i, r in zip(page, records)]
        if batch:
            save(kind, batch)
        return totals, dropped

    def _records(
        self, todo: dict[str, list[int]], at: BlockParam, early: EarlyReads | None
    ) -> Iterator[tuple[Page, list[dict[str, Any]]]]:
        """Every page of todo with its records, in order: those read early first (ids 1..counter, the first
        ids of each kind), then the rest, a window of pages in flight."""
        read_early: set[tuple[str, int]] = set()
        if early is not None:
            for page in early.pages():
                yield page, early.next()
                read_early.update((page[0], i) for i in page[1])
        pages = [
            p for name, ids in todo.items() for p in pages_of(name, [i for i in ids if (name, i) not in read_early])
        ]
        works = ((lambda p=p: self._page(p, at),) for p in pages)
        for page, (records,) in zip(pages, in_order(self.pool, works, self.ahead)):
            yield page, records
