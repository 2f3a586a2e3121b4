"""What running one sync job means.

Owns the glue between a claimed job and the sync engine: resolve the range
once (a resumed job keeps the range it started with), run the engine with the
job's progress reporting and a journal that saves each chunk of work to the
store, resolve the records' IPFS content when gateways are configured
(server/jobs/ipfs.py), then finish the job: ``completed`` with its result summary, ``failed``
with a reason (``JOB_TIMEOUT``, ``RPC_UNAVAILABLE``, ...), ``cancelled``, or,
on a server shutdown, released back to ``pending`` to resume from its
checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.engine.contracts import Deployment, EntityKind
from server.engine.sync import BlockRange, SyncEngine, SyncOptions, SyncStats, Touch, resolve_range
from server.errors import ChainsyncError
from server.jobs.ipfs import ContentStats, Gateways, resolve_job_content
from server.jobs.runner import JobContext, JobStopped
from server.jobs.store import ContentCache, JobRecord, JobStore, ResultSummary
from server.metrics import NO_METRICS, ServerMetrics
from server.transport.rpc import JsonRpc, RetryPolicy, RpcError

log = logging.getLogger("chainsync.jobs")

KINDS_BY_TYPE = {
    "blockchain_sync": ["proposals", "petitions", "reports"],
    "proposals_sync": ["proposals"],
    "petitions_sync": ["petitions"],
    "reports_sync": ["reports"],
}


@dataclass
class SyncJobDeps:
    rpc_urls: tuple[str, ...]
    load_deployment: Callable[[], Deployment]
    kinds: dict[str, EntityKind]
    confirmations: int
    sync_options: SyncOptions
    content_cache: ContentCache  # the IPFS content already fetched, for every job (with ipfs)
    rpc_budget_s: float = 30.0
    metrics: ServerMetrics = field(default_factory=lambda: NO_METRICS)
    ipfs: Gateways | None = None  # resolve the records' *Cid fields through these gateways (server/jobs/ipfs.py)


class StoreJournal:
    """The engine's SyncJournal, saved in the job store under one job."""

    def __init__(self, store: JobStore, job_id: str, checkpoint: dict[str, Any], owner: str) -> None:
        self.store = store
        self.job_id = job_id
        self.checkpoint = dict(checkpoint)
        self.owner = owner

    def _written(self, ok: bool) -> None:
        if not ok:
            raise JobStopped("lost")  # our lease expired and another worker took the job

    def save_scan(self, touches: list[Touch]) -> None:
        rows = [(t.kind, t.entity_id, t.block, t.log_index, t.created) for t in touches]
        self._written(self.store.save_chunk(self.job_id, checkpoint=self.checkpoint, touched=rows, owner=self.owner))

    def event_count(self) -> int:
        return self.store.touched_event_count(self.job_id)

    def rewind(self, from_block: int) -> None:
        hashes = {b: h for b, h in self.checkpoint.get("hashes", {}).items() if int(b) < from_block}
        self.checkpoint.update(scannedTo=from_block - 1, hashes=hashes)
        self._written(self.store.rewind(self.job_id, from_block, self.checkpoint, owner=self.owner))

    def touched(self, kind: str) -> dict[int, Any]:
        return self.store.touched(self.job_id, kind)

    def done_ids(self, kind: str) -> set[str]:
        return self.store.record_ids(self.job_id, kind)

    def save_records(self, kind: str, records: list[dict[str, Any]]) -> None:
        self._written(
            self.store.save_chunk(self.job_id, checkpoint=self.checkpoint, records=(kind, records), owner=self.owner)
        )


def _range_for(ctx: JobContext, engine: SyncEngine, deployment: Deployment, deps: SyncJobDeps) -> BlockRange:
    checkpoint = ctx.job.checkpoint
    if "fromBlock" in checkpoint:  # resuming: the range the job started with
        return BlockRange(int(checkpoint["fromBlock"]), int(checkpoint["toBlock"]))
    confirmations = int(ctx.job.request.get("confirmations", deps.confirmations))
    request = ctx.job.request
    if request.get("incremental"):
        request = {**request, **_continue_from(ctx.store.last_completed(ctx.job.type), engine)}
    return resolve_range(request, engine.head(), deployment.earliest_block, confirmations)


def _continue_from(last: ResultSummary | None, engine: SyncEngine) -> dict[str, Any]:
    """Where an incremental sync starts: after the last completed sync of its type, if the chain
    still has that sync's last block; if that block was reorganised away, its whole range again."""
    if last is None:
        return {"isFullSync": True}
    if engine.block_hash(last.to_block) != last.to_block_hash:
        return {"fromBlock": last.from_block}
    return {"fromBlock": last.to_block + 1}


def run_sync_job(ctx: JobContext, deps: SyncJobDeps) -> None:
    job = ctx.job
    store = ctx.store

    def stop_check() -> bool:
        ctx.check()  # raises JobStopped
        return False

    rpc = JsonRpc(
        deps.rpc_urls, should_stop=stop_check, retry=RetryPolicy(budget_s=deps.rpc_budget_s), metrics=deps.metrics
    )
    stats: SyncStats | None = None
    try:
        deployment = deps.load_deployment()
        engine = SyncEngine(rpc, deployment, deps.kinds, deps.sync_options, deps.metrics)
        chain_id = engine.check_chain()
        rng = _range_for(ctx, engine, deployment, deps)
        checkpoint = {**job.checkpoint, "fromBlock": rng.from_block, "toBlock": rng.to_block}
        journal = StoreJournal(store, job.id, checkpoint, ctx.owner)
        scanned_to = int(journal.checkpoint.get("scannedTo", rng.from_block - 1))
        stats = SyncStats(blocks_total=rng.size, blocks_done=scanned_to - rng.from_block + 1)
        verb = "Resuming" if job.attempts > 1 else "Syncing"
        log.info(
            "job started",
            extra={"blocks": f"{rng.from_block}..{rng.to_block}", "scanned_to": scanned_to, "chain_id": chain_id},
        )
        ctx.report(
            0,
            f"{verb} blocks {rng.from_block}..{rng.to_block}",
            stats.as_dict(),
            force=True,
            from_block=rng.from_block,
            to_block=rng.to_block,
        )

        def progress(s: SyncStats, message: str) -> None:
            ctx.report(s.percent(), message, s.as_dict())

        counts = engine.run(rng, KINDS_BY_TYPE[job.type], bool(job.request.get("isFullSync")), stats, progress, journal)
        ctx.check()
        content = _resolve_content(ctx, deps.ipfs, deps.content_cache, stats) if deps.ipfs else None
        summary = ResultSummary(
            from_block=rng.from_block,
            to_block=rng.to_block,
            to_block_hash=engine.block_hash(rng.to_block),
            chain_id=chain_id,
            events_count=stats.events_found,
            processing_time_ms=int((time.time() - (job.started_at or time.time())) * 1000),
            record_counts=counts,
        )
        total = sum(counts.values())
        _finish(
            ctx,
            deps.metrics,
            "completed",
            summary=summary,
            stats={**stats.as_dict(), **(content.as_dict() if content else {})},
            message=f"Synced {total} records from blocks {rng.from_block}..{rng.to_block}",
        )
    except JobStopped as stop:
        _stopped(ctx, stop.why, stats, deps.metrics)
    except ChainsyncError as exc:
        if exc.reason == "JOB_CANCELLED" or ctx.stop_reason():
            _stopped(ctx, ctx.stop_reason() or "cancelled", stats, deps.metrics)
        else:
            _finish(ctx, deps.metrics, "failed", message="Failed", error_code=exc.reason, error_message=exc.message)
    except RpcError as exc:
        _finish(ctx, deps.metrics, "failed", message="Failed", error_code="RPC_ERROR", error_message=str(exc))
    except Exception as exc:  # a bug: fail the job loudly rather than leave it running
        log.exception("job failed unexpectedly")
        _finish(
            ctx,
            deps.metrics,
            "failed",
            message="Failed",
            error_code="INTERNAL",
            error_message=f"internal error: {type(exc).__name__}: {exc}",
        )
    finally:
        rpc.close()


def _resolve_content(ctx: JobContext, gateways: Gateways, cache: ContentCache, stats: SyncStats) -> ContentStats:
    """The IPFS step: after the records are read, their *Cid fields' content beside them.

    It stops fetching a little before the job's timeout (a tenth of it, at most 30 s), so that slow
    gateways leave fields unresolved rather than fail a job whose records are all read.
    """
    reserve = min(30.0, ctx.job.timeout_s / 10)

    def progress(done: int, total: int, content: ContentStats) -> None:
        figures = {**stats.as_dict(), **content.as_dict()}
        ctx.report(stats.percent(), f"Resolving IPFS content ({done}/{total})", figures, force=done in (0, total))

    return resolve_job_content(
        ctx.store,
        cache,
        ctx.job.id,
        KINDS_BY_TYPE[ctx.job.type],
        gateways,
        owner=ctx.owner,
        check=ctx.check,
        stopping=lambda: ctx.stop_reason() is not None,
        progress=progress,
        out_of_time=lambda: time.time() > ctx.deadline - reserve,
    )


def _stopped(ctx: JobContext, why: str, stats: SyncStats | None, metrics: ServerMetrics) -> None:
    job = ctx.job
    last = stats.as_dict() if stats else None
    if why == "timeout":
        _finish(
            ctx,
            metrics,
            "failed",
            message="Timed out",
            error_code="JOB_TIMEOUT",
            stats=last,
            error_message=f"the job ran longer than its timeout of {job.timeout_s} s; start it again "
            "with a smaller range or a larger timeoutSeconds",
        )
    elif why == "cancelled":
        current = ctx.store.get(job.id)
        if current is not None and current.cancel_requested:
            _finish(
                ctx,
                metrics,
                "cancelled",
                message="Cancelled",
                error_code="JOB_CANCELLED",
                stats=last,
                error_message="cancelled by request",
            )
        # else: the lease went to another worker; it is that worker's job now
    elif why == "shutdown":  # back to pending, to resume from the checkpoint
        ctx.store.release(job.id, ctx.owner)
        log.info("job released at shutdown; it resumes from its checkpoint")
    elif why == "lost":
        log.warning("job lost its lease; the worker that took it over finishes it")
    # lost: another worker took the job over when our lease expired; it finishes it


def _finish(ctx: JobContext, metrics: ServerMetrics, state: str, **details: Any) -> None:
    """Ends the job, unless it is no longer ours (then the worker holding it will)."""
    if ctx.store.finish(ctx.job.id, state, owner=ctx.owner, **details):
        metrics.job_finished(ctx.job.type, state, time.time() - (ctx.job.started_at or time.time()))
        _log_end(ctx.job, state, details)
    else:
        log.warning("job %s was not ours to finish any more (%s)", ctx.job.id, state)


def _log_end(job: JobRecord, state: str, details: dict[str, Any]) -> None:
    """The job's last line: its state, how long it ran since it first started, its records or its reason."""
    fields: dict[str, Any] = {"state": state, "duration_s": round(time.time() - (job.started_at or time.time()), 3)}
    summary = details.get("summary")
    if summary is not None:
        fields["records"] = sum(summary.record_counts.values())
        fields["events"] = summary.events_count
        fields["blocks"] = f"{summary.from_block}..{summary.to_block}"
    if state == "failed":
        fields["reason"] = details.get("error_code")
        log.warning("job failed: %s", details.get("error_message"), extra=fields)
    else:
        log.info("job finished", extra=fields)
