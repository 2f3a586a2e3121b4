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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from server import states
from server.engine.contracts import Deployment, EntityKind
from server.engine.journal import Touch
from server.engine.ranges import BlockRange, resolve_range, safe_head
from server.engine.reorgs import Cursor, Reorg
from server.engine.silent import TraceSupport
from server.engine.stats import SyncStats
from server.engine.sync import SyncEngine, SyncOptions, SyncPlan
from server.errors import ChainsyncError
from server.jobs.ipfs import ContentStats, Gateways, resolve_job_content
from server.jobs.runner import JobContext
from server.jobs.store import ContentCache, JobRecord, JobStore, ResultSummary
from server.kinds import JOB_TYPES
from server.metrics import NO_METRICS, ServerMetrics
from server.stopping import CANCELLED, LOST, SHUTDOWN, TIMEOUT, Stopped
from server.transport.endpoints import SHARED, Endpoints
from server.transport.provider_limits import RpcError
from server.transport.rpc import JsonRpc

log = logging.getLogger("chainsync.jobs")


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
    trace_support: TraceSupport = field(default_factory=TraceSupport)  # which endpoints serve trace_filter
    endpoints: Endpoints = field(default_factory=lambda: SHARED)  # each node URL's window, shared by the jobs


class StoreJournal:
    """The engine's SyncJournal, saved in the job store under one job (and reading its cursor's records)."""

    def __init__(self, store: JobStore, job_id: str, checkpoint: dict[str, Any], owner: str, after: str | None) -> None:
        self.store = store
        self.job_id = job_id
        self.checkpoint = dict(checkpoint)
        self.owner = owner
        self.after = after  # the cursor: the job this one continues from
        # kind -> id -> provenance of what this process saved: the whole scan when it began here (else None, and
        # the store says); saves reading every touch back before the reads
        self._touched: dict[str, dict[int, Any]] | None = {} if "scannedTo" not in checkpoint else None

    def _written(self, ok: bool) -> None:
        if not ok:
            raise Stopped(LOST)  # our lease expired and another worker took the job

    def save_plan(self, plan: SyncPlan) -> None:
        self.checkpoint.update(plan_to_checkpoint(plan))

    def save_scan(self, touches: list[Touch]) -> None:
        rows = [tuple(t) for t in touches]
        self._written(self.store.save_chunk(self.job_id, checkpoint=self.checkpoint, touched=rows, owner=self.owner))
        if self._touched is not None:
            for t in touches:
                ids = self._touched.setdefault(t.kind, {})
                if t.created is not None or t.entity_id not in ids:
                    ids[t.entity_id] = t.created

    def window(self) -> dict[int, str]:
        return self.store.window(self.job_id)

    def save_window(self, hashes: dict[int, str]) -> None:
        self._written(self.store.save_window(self.job_id, hashes, owner=self.owner))

    def event_count(self) -> int:
        if "events" in self.checkpoint:
            return int(self.checkpoint["events"])
        return self.store.touched_event_count(self.job_id)  # a checkpoint saved before it counted them

    def rewind(self, from_block: int, count_from: int) -> None:
        # From count_from on, every event's touch is saved with the number of events that named it.
        events = self.event_count() - self.store.touched_event_count(self.job_id, since=count_from)
        self.checkpoint.update(scannedTo=from_block - 1, events=events, eventsTo=count_from - 1)
        self._touched = None  # which ids stay touched is the store's to say now
        self._written(self.store.rewind(self.job_id, from_block, self.checkpoint, owner=self.owner))

    def touched(self, kind: str) -> dict[int, Any]:
        if self._touched is not None:
            return dict(self._touched.get(kind, {}))
        return self.store.touched(self.job_id, kind)

    def earlier_touches(self, kind: str, since: int) -> set[int]:
        return self.store.kept_touches(self.after, kind, since) if self.after else set()

    def done_ids(self, kind: str) -> set[str]:
        return self.store.record_ids(self.job_id, kind)

    def save_records(self, kind: str, records: list[dict[str, Any]]) -> None:
        self._written(
            self.store.save_chunk(self.job_id, checkpoint=self.checkpoint, records=(kind, records), owner=self.owner)
        )


def plan_to_checkpoint(plan: SyncPlan) -> dict[str, Any]:
    """The plan as the job's checkpoint keeps it (a resumed job goes on with the plan it had)."""
    return {
        "fromBlock": plan.range.from_block,
        "toBlock": plan.range.to_block,
        "full": plan.full,
        "confirmations": plan.confirmations,
        "rereadFrom": plan.reread_from,
        "windowFloor": plan.window_floor,
        "after": plan.after,
        "reorg": asdict(plan.reorg) if plan.reorg else None,
    }


def plan_from_checkpoint(checkpoint: dict[str, Any], request: dict[str, Any]) -> SyncPlan:
    rng = BlockRange(int(checkpoint["fromBlock"]), int(checkpoint["toBlock"]))
    return SyncPlan(
        rng,
        full=checkpoint.get("full", bool(request.get("isFullSync"))),
        confirmations=checkpoint.get("confirmations", 0),
        reread_from=checkpoint.get("rereadFrom"),
        window_floor=checkpoint.get("windowFloor", rng.from_block),
        after=checkpoint.get("after"),
        reorg=Reorg(**checkpoint["reorg"]) if checkpoint.get("reorg") else None,
    )


def load_cursor(store: JobStore, job: JobRecord) -> Cursor | None:
    """The cursor an incremental sync continues from: the job named by ``after``, else the last completed
    sync of its type its caller can see; None when there is none (the sync is then a full one)."""
    after = job.request.get("afterJobId")
    if after is None:
        after = store.last_completed_id(job.type, job.principal)
        if after is None:
            return None
    summary = store.result_summary(after)
    if summary is None:  # removed since the request was accepted (retention, a delete)
        raise ChainsyncError("CURSOR_NOT_FOUND", f"after: job {after} no longer exists", {"field": "after"})
    window = store.window(after)
    return Cursor(after, summary.to_block, summary.to_block_hash, window, min(window, default=summary.to_block))


def make_plan(
    job: JobRecord, engine: SyncEngine, deployment: Deployment, deps: SyncJobDeps, head: int, cursor: Cursor | None,
    cursor_hash_now: str | None,
) -> SyncPlan:  # fmt: skip
    """What the job reads: the plan it started with when resuming; else from its cursor, or its range."""
    if "fromBlock" in job.checkpoint:
        return plan_from_checkpoint(job.checkpoint, job.request)
    confirmations = int(job.request.get("confirmations", deps.confirmations))
    request = job.request
    if request.get("incremental"):
        if cursor is not None:
            top = safe_head(head, confirmations)
            if "toBlock" in request:  # an explicit end, checked as any range's
                top = resolve_range({"fromBlock": 0, "toBlock": request["toBlock"]}, head, 0, confirmations).to_block
            plan = engine.continue_after(cursor, top, cursor_hash_now)
            return replace(plan, confirmations=confirmations, after=cursor.job_id)
        request = {**request, "isFullSync": True}  # nothing to continue from: everything
    rng = resolve_range(request, head, deployment.earliest_block, confirmations)
    return SyncPlan(rng, full=bool(request.get("isFullSync")), confirmations=confirmations, window_floor=rng.from_block)


def run_sync_job(ctx: JobContext, deps: SyncJobDeps) -> None:
    rpc = JsonRpc(
        deps.rpc_urls, stop=ctx.stop, budget_s=deps.rpc_budget_s, metrics=deps.metrics, endpoints=deps.endpoints
    )
    stats = SyncStats()
    try:
        _sync(ctx, deps, rpc, stats)
    except Stopped as stop:
        _stopped(ctx, stop.reason, stats, deps.metrics)
    except ChainsyncError as exc:
        if ctx.stop.reason:  # it failed because it was being stopped: the stop is what happened
            _stopped(ctx, ctx.stop.reason, stats, deps.metrics)
        else:
            _finish(
                ctx, deps.metrics, states.FAILED, message="Failed", error_code=exc.reason, error_message=exc.message
            )
    except RpcError as exc:
        _finish(ctx, deps.metrics, states.FAILED, message="Failed", error_code="RPC_ERROR", error_message=str(exc))
    except Exception as exc:  # a bug: fail the job loudly rather than leave it running
        log.exception("job failed unexpectedly")
        _finish(
            ctx,
            deps.metrics,
            states.FAILED,
            message="Failed",
            error_code="INTERNAL",
            error_message=f"internal error: {type(exc).__name__}: {exc}",
        )
    finally:
        rpc.close()


def _sync(ctx: JobContext, deps: SyncJobDeps, rpc: JsonRpc, stats: SyncStats) -> None:
    """The job's work, start to completed: plan, engine, IPFS content, result summary."""
    deployment = deps.load_deployment()
    engine = SyncEngine(rpc, deployment, deps.kinds, deps.sync_options, deps.metrics, deps.trace_support)
    try:
        _run_engine(ctx, deps, engine, deployment, stats)
    finally:
        engine.close()


def _run_engine(
    ctx: JobContext, deps: SyncJobDeps, engine: SyncEngine, deployment: Deployment, stats: SyncStats
) -> None:
    job = ctx.job
    resuming = "fromBlock" in job.checkpoint
    cursor = load_cursor(ctx.store, job) if job.request.get("incremental") and not resuming else None
    chain = engine.setup(cursor.to_block if cursor else None)
    chain_id = chain.chain_id
    plan = make_plan(job, engine, deployment, deps, chain.head, cursor, chain.cursor_hash)
    if plan.range.to_block == chain.head and "fromBlock" not in job.checkpoint:
        plan = replace(plan, to_block_hash=chain.head_hash)  # state is read at the block the setup saw
    rng = plan.range
    journal = StoreJournal(ctx.store, job.id, {**job.checkpoint, **plan_to_checkpoint(plan)}, ctx.owner, plan.after)
    scanned_to = int(journal.checkpoint.get("scannedTo", rng.from_block - 1))
    stats.blocks_total, stats.blocks_done = rng.size, scanned_to - rng.from_block + 1
    log.info(
        "job started",
        extra={"blocks": f"{rng.from_block}..{rng.to_block}", "scanned_to": scanned_to, "chain_id": chain_id},
    )
    verb = "Resuming" if job.attempts > 1 else "Syncing"
    message = f"{verb} blocks {rng.from_block}..{rng.to_block}"
    ctx.report(0, message, stats.as_dict(), force=True, from_block=rng.from_block, to_block=rng.to_block)

    phase: list[tuple] = []

    def progress(s: SyncStats, message: str) -> None:
        # a new phase (the reads began, a reorg was handled) is written at once, whatever the rate limit
        now = (s.reads_began is not None, s.reorgs)
        ctx.report(s.percent(), message, s.as_dict(), force=phase != [now])
        phase[:] = [now]

    outcome = engine.run(plan, list(JOB_TYPES[job.type]), stats, progress, journal)
    rng = outcome.plan.range
    ctx.stop.raise_if_stopped()
    content = _resolve_content(ctx, deps.ipfs, deps.content_cache, stats) if deps.ipfs else None
    summary = ResultSummary(
        from_block=rng.from_block,
        to_block=rng.to_block,
        to_block_hash=outcome.to_block_hash,
        chain_id=chain_id,
        events_count=stats.events_found,
        processing_time_ms=int((time.time() - (job.started_at or time.time())) * 1000),
        record_counts=outcome.counts,
        after_job_id=outcome.plan.after,
        window_from=outcome.window_from,
        reorg=asdict(outcome.plan.reorg) if outcome.plan.reorg else None,
        dropped=outcome.dropped,
    )
    _finish(
        ctx,
        deps.metrics,
        states.COMPLETED,
        summary=summary,
        stats={**stats.as_dict(), **(content.as_dict() if content else {})},
        message=f"Synced {sum(outcome.counts.values())} records from blocks {rng.from_block}..{rng.to_block}",
    )


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
        list(JOB_TYPES[ctx.job.type]),
        gateways,
        owner=ctx.owner,
        stop=ctx.stop,
        progress=progress,
        out_of_time=lambda: time.time() > ctx.deadline - reserve,
    )


def _stopped(ctx: JobContext, why: str, stats: SyncStats | None, metrics: ServerMetrics) -> None:
    job = ctx.job
    last = stats.as_dict() if stats else None
    if why == TIMEOUT:
        _finish(
            ctx,
            metrics,
            states.FAILED,
            message="Timed out",
            error_code="JOB_TIMEOUT",
            stats=last,
            error_message=f"the job ran longer than its timeout of {job.timeout_s} s; start it again "
            "with a smaller range or a larger timeoutSeconds",
        )
    elif why == CANCELLED:
        current = ctx.store.get(job.id)
        if current is not None and current.cancel_requested:
            _finish(
                ctx,
                metrics,
                states.CANCELLED,
                message="Cancelled",
                error_code="JOB_CANCELLED",
                stats=last,
                error_message="cancelled by request",
            )
        # else: the lease went to another worker; it is that worker's job now
    elif why == SHUTDOWN:  # back to pending, to resume from the checkpoint
        ctx.store.release(job.id, ctx.owner)
        log.info("job released at shutdown; it resumes from its checkpoint")
    elif why == LOST:
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
    if state == states.FAILED:
        fields["reason"] = details.get("error_code")
        log.warning("job failed: %s", details.get("error_message"), extra=fields)
    else:
        log.info("job finished", extra=fields)
