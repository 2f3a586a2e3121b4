"""Reading state at toBlock: each entity to report, through its getter, several pages in flight.

Which entities: those the scan touched, every id 1..counter for a full sync,
and what earlier results listed from blocks the plan reads again (dropped by
a reorg, or past the new toBlock): each read again, or listed as dropped when
its id is past the counter at toBlock (docs/reorgs.md). Getter calls go 100
to a JSON-RPC batch, a window of batches in flight (server/engine/pipeline.py),
each page decoded by the kind's lean decoder and saved in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from server.engine.contracts import Deployment, EntityKind
from server.engine.journal import SyncJournal
from server.engine.pipeline import in_order
from server.engine.stats import SyncStats
from server.metrics import ServerMetrics
from server.transport.rpc import MAX_BATCH, JsonRpc

log = logging.getLogger("chainsync.sync")

ProgressCallback = Callable[[SyncStats, str], None]


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

    def counts(self, kind_names: list[str], block: int) -> dict[str, int]:
        """Each kind's counter at block, in one round trip."""
        calls = [
            self.kinds[n].counter_call(self.deployment.addresses[self.kinds[n].contract], block) for n in kind_names
        ]
        return {name: int(answer, 16) for name, answer in zip(kind_names, self.rpc.batch(calls))}

    def read(
        self,
        to_block: int,
        plan: dict[str, tuple[set[int], set[int]]],
        counts: dict[str, int] | None,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
    ) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Reads what plan asks per kind, (ids to read, ids earlier results listed), at to_block.

        ``counts`` are the counters at to_block when known (a full sync, a re-read). Returns the records
        per kind and the ids that no longer exist."""
        todo: dict[str, tuple[list[int], dict[int, Any]]] = {}
        totals: dict[str, int] = {}
        dropped: dict[str, list[str]] = {}
        stats.records_done = 0
        for name, (ids, earlier) in plan.items():
            created = journal.touched(name)
            ids = ids | set(created)
            if earlier:
                count = (counts or {})[name]
                ids |= {i for i in earlier if i <= count}
                if gone := [str(i) for i in sorted(earlier) if i > count]:
                    dropped[name] = gone
            done = journal.done_ids(name)
            totals[name] = len(ids)
            stats.records_done += len(done)
            todo[name] = (sorted(i for i in ids if str(i) not in done), created)
        stats.records_total = sum(totals.values())
        log.info(
            "scan done; reading records",
            extra={"events": stats.events_found, "records": stats.records_total, "block": to_block},
        )
        progress(stats, f"Reading {stats.records_total} records at block {to_block}")
        stats.reading()
        self._read_pages(todo, to_block, stats, progress, journal)
        return totals, dropped

    def _read_pages(
        self,
        todo: dict[str, tuple[list[int], dict[int, Any]]],
        block: int,
        stats: SyncStats,
        progress: ProgressCallback,
        journal: SyncJournal,
    ) -> None:
        """Every page of every kind, a window of pages in flight, each saved in order."""
        pages = [
            (name, ids[n : n + MAX_BATCH]) for name, (ids, _) in todo.items() for n in range(0, len(ids), MAX_BATCH)
        ]

        def work(name: str, page: list[int]) -> Callable[[], list[dict[str, Any]]]:
            kind = self.kinds[name]
            address = self.deployment.addresses[kind.contract]
            created = todo[name][1]

            def read() -> list[dict[str, Any]]:
                answers = self.rpc.batch([kind.getter_call(address, i, block) for i in page])
                return [dict(kind.decode_record(i, raw), created=created.get(i)) for i, raw in zip(page, answers)]

            return read

        for (name, page), (records,) in zip(pages, in_order(self.pool, ((work(n, p),) for n, p in pages), self.ahead)):
            journal.save_records(name, records)
            stats.records_done += len(page)
            self.metrics.records(name, len(page))
            progress(stats, f"Read {stats.records_done} of {stats.records_total} records at block {block}")
