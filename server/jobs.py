"""What running one sync job means.

Owns the glue between a claimed job and the sync engine: resolve the range
against the chain head, run the engine with the job's progress and record
sinks, and finish the job ``completed`` with its result summary or ``failed``
with a reason (``JOB_TIMEOUT``, ``RPC_UNAVAILABLE``, ...).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from server.contracts import Deployment, EntityKind
from server.errors import ChainsyncError
from server.rpc import JsonRpc, RpcError
from server.runner import JobContext
from server.store import ResultSummary
from server.sync import BlockRange, SyncEngine, SyncStats, resolve_range

log = logging.getLogger("chainsync.jobs")

KINDS_BY_TYPE = {
    "blockchain_sync": ["proposals", "petitions", "reports"],
    "proposals_sync": ["proposals"],
    "petitions_sync": ["petitions"],
    "reports_sync": ["reports"],
}


class JobTimeout(Exception):
    pass


@dataclass
class SyncJobDeps:
    rpc_urls: tuple[str, ...]
    load_deployment: Callable[[], Deployment]
    kinds: dict[str, EntityKind]
    confirmations: int
    log_chunk_blocks: int


def run_sync_job(ctx: JobContext, deps: SyncJobDeps) -> None:
    job = ctx.job
    started = time.monotonic()

    def stop_check() -> bool:
        if ctx.timed_out():
            raise JobTimeout()
        return ctx.should_stop()

    rpc = JsonRpc(deps.rpc_urls, should_stop=stop_check)
    try:
        deployment = deps.load_deployment()
        engine = SyncEngine(rpc, deployment, deps.kinds, deps.log_chunk_blocks)
        chain_id = engine.check_chain()
        confirmations = int(job.request.get("confirmations", deps.confirmations))
        rng: BlockRange = resolve_range(job.request, engine.head(), deployment.earliest_block, confirmations)
        stats = SyncStats(blocks_total=rng.size)
        ctx.report(0, f"Syncing blocks {rng.from_block}..{rng.to_block}", stats.as_dict(), force=True,
                   from_block=rng.from_block, to_block=rng.to_block)

        def progress(s: SyncStats, message: str) -> None:
            stop_check()
            ctx.report(s.percent(), message, s.as_dict())

        def sink(kind: str, records: list[dict]) -> None:
            ctx.store.add_records(job.id, kind, records)

        counts = engine.run(rng, KINDS_BY_TYPE[job.type], bool(job.request.get("isFullSync")), stats, progress, sink)
        summary = ResultSummary(
            from_block=rng.from_block,
            to_block=rng.to_block,
            to_block_hash=engine.block_hash(rng.to_block),
            chain_id=chain_id,
            events_count=stats.events_found,
            processing_time_ms=int((time.monotonic() - started) * 1000),
            record_counts=counts,
        )
        total = sum(counts.values())
        ctx.store.finish(job.id, "completed", message=f"Synced {total} records from blocks {rng.from_block}..{rng.to_block}",
                         summary=summary)
    except JobTimeout:
        ctx.store.finish(job.id, "failed", message="Timed out", error_code="JOB_TIMEOUT",
                         error_message=f"the job ran longer than its timeout of {job.timeout_s} s; "
                                       "start it again with a smaller range or a larger timeoutSeconds")
    except ChainsyncError as exc:
        ctx.store.finish(job.id, "failed", message="Failed", error_code=exc.reason, error_message=exc.message)
    except RpcError as exc:
        ctx.store.finish(job.id, "failed", message="Failed", error_code="RPC_ERROR", error_message=str(exc))
    except Exception as exc:  # a bug: fail the job loudly rather than leave it running
        log.exception("job %s failed unexpectedly", job.id)
        ctx.store.finish(job.id, "failed", message="Failed", error_code="INTERNAL",
                         error_message=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        rpc.close()
