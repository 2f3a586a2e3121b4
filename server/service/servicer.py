"""The gRPC JobService (grpc.aio), modelled on grpc's route_guide servicer.

Owns what each call does: checks its input (server/service/requests.py),
reads or changes jobs in the store, and answers with messages
(server/service/messages.py). Failures are raised as ChainsyncError; the
call wrapper (calls.py) turns them into statuses. Blocking store calls run in worker
threads so the event loop stays free for many watchers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf import empty_pb2

from server import logs
from server.errors import ChainsyncError, invalid_argument, job_not_found
from server.jobs.runner import Runner
from server.jobs.store import JobPosition, JobRecord, JobStore
from server.kinds import KINDS
from server.service import page_tokens
from server.service.auth import Tokens
from server.service.job_cache import Held, JobCache
from server.service.messages import RECORD_MESSAGES, job_message, record_message, result_message, timestamp
from server.service.requests import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_RESULT_PAGE,
    check_job_id,
    validate_start,
)
from server.service.watch import WatchHub
from server.states import CANCELLED, COMPLETED, FAILED, STATE_NAME, TYPE_NAME

log = logging.getLogger("chainsync.servicer")

WATCH_POLL_S = 1.0  # a watched job is read when the cache tells of a change; this often regardless (RECONCILE_S)
DELETE_CANCEL_WAIT_S = 5.0


def _result_offsets(value: Any) -> dict[str, int]:
    """Per-kind offsets from a GetResult page token's value."""
    if not isinstance(value, dict) or not set(value) <= RECORD_MESSAGES.keys():
        raise ValueError("not offsets per record kind")
    if not all(type(v) is int and 0 <= v < 2**62 for v in value.values()):
        raise ValueError("not an offset")
    return value


def _list_position(value: Any) -> JobPosition:
    """(created_at, job id) from a ListJobs page token's value."""
    created_at, job_id = value if isinstance(value, list) and len(value) == 2 else (None, None)
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or not isinstance(job_id, str):
        raise ValueError("not a list position")
    if not math.isfinite(created_at := float(created_at)):  # float(): OverflowError for a huge integer
        raise ValueError("not a time")
    return created_at, job_id


def no_result(job: JobRecord) -> ChainsyncError:
    """Why a job that is not completed has no result: it failed, it was cancelled, or it is not done yet."""
    details = {"jobId": job.id, "state": job.state}
    if job.state == FAILED:
        return ChainsyncError(
            "JOB_FAILED",
            f"job {job.id} failed and has no result: {job.error_code}: {job.error_message}",
            {**details, "errorCode": job.error_code or "", "error": job.error_message or ""},
        )
    if job.state == CANCELLED:
        return ChainsyncError("JOB_CANCELLED", f"job {job.id} was cancelled and has no result", details)
    return ChainsyncError(
        "JOB_NOT_COMPLETED", f"job {job.id} is {job.state}; its result is available once it is completed", details
    )


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        runner: Runner,
        default_timeout_s: int,
        tokens: Tokens | None = None,
        cache: JobCache | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.watch_hub = WatchHub(store, WATCH_POLL_S)
        self.runner = runner
        self.cache = cache if cache is not None else JobCache(store, retention_s=24 * 60 * 60)
        self.cache.on_change(self.watch_hub.nudge)
        self.default_timeout_s = default_timeout_s

    def _caller(self, context: grpc.aio.ServicerContext) -> str | None:
        """Whose jobs the caller may see: its token's name when jobs are scoped per token, else None (all)."""
        if self.tokens is None or not self.tokens.scoped:
            return None
        return self.tokens.principal(dict(context.invocation_metadata() or ()).get("authorization"))

    async def _held(self, job_id: str, context: grpc.aio.ServicerContext) -> Held:
        """The job as this server holds it (server/service/job_cache.py), read from the store when not held."""
        check_job_id(job_id)
        held = self.cache.get(job_id) or await asyncio.to_thread(self.cache.load, job_id)
        caller = self._caller(context)
        if held is None or (caller is not None and held.job.principal != caller):
            raise job_not_found(job_id)  # another token's job does not exist for this caller
        return held

    async def _get(self, job_id: str, context: grpc.aio.ServicerContext) -> JobRecord:
        return (await self._held(job_id, context)).job

    async def _written_at(self, job: JobRecord) -> float:
        """When the job's current version was written: the same time a replay of that event carries."""
        events = await asyncio.to_thread(self.store.events, job.id, job.version - 1)
        return events[0][1] if events and events[0][0] == job.version else time.time()

    async def StartSync(self, request, context):
        job_type, body, timeout_s = validate_start(request, self.default_timeout_s)
        if "afterJobId" in body:
            await self._check_cursor(body["afterJobId"], job_type, context)
        request_id = logs.current_request_id()
        if request_id:  # the job's own log lines carry the request id of the call that started it
            body[logs.REQUEST_ID_KEY] = request_id
        new = JobRecord(
            principal=self._caller(context),
            id=str(uuid.uuid4()),
            type=job_type,
            request=body,
            timeout_s=timeout_s,
            request_id=request.request_id or None,
        )
        job = await asyncio.to_thread(self.store.create, new)
        if job.id == new.id:
            self.runner.wake()
            log.info("job created", extra={"job_id": job.id, "type": job_type})
        else:
            log.info("job already started with this requestId", extra={"job_id": job.id})
        return jobs_pb2.StartSyncResponse(
            job_id=job.id,
            job=job_message(job),
            message="Blockchain sync job started" if job.id == new.id else "Job already started with this requestId",
            status_url=f"/api/blockchain/sync/status/{job.id}",
            result_url=f"/api/blockchain/sync/result/{job.id}",
        )

    async def _check_cursor(self, after: str, job_type: str, context: grpc.aio.ServicerContext) -> None:
        """``after`` names a completed job of this type the caller can see: else 404, 409 or 400 naming it."""
        job = await asyncio.to_thread(self.store.get, after)
        caller = self._caller(context)
        if job is None or (caller is not None and job.principal != caller):
            raise ChainsyncError(
                "CURSOR_NOT_FOUND", f"after: no job with id {after}", {"field": "after", "jobId": after}
            )
        if job.state != COMPLETED:
            raise ChainsyncError(
                "CURSOR_NOT_COMPLETED",
                f"after: job {after} is {job.state}; a sync continues only from a completed one",
                {"field": "after", "jobId": after, "state": job.state},
            )
        if job.type != job_type:
            raise invalid_argument("after", f"job {after} is a {job.type}; this request is a {job_type}")

    async def GetJob(self, request, context):
        """From memory: no thread hop and no store read for a live or recently finished job."""
        return (await self._held(request.job_id, context)).message

    async def GetResult(self, request, context):
        job = await self._get(request.job_id, context)
        if job.state != COMPLETED:
            raise no_result(job)
        if not 0 <= request.page_size <= MAX_RESULT_PAGE:
            raise invalid_argument("pageSize", f"must be between 0 (everything) and {MAX_RESULT_PAGE}")
        try:
            offsets = page_tokens.decode(request.page_token, _result_offsets) if request.page_token else {}
        except ValueError:
            raise invalid_argument("pageToken", "not a token this server returned") from None
        return await asyncio.to_thread(self._result, job, request.page_size, offsets)

    def _result(self, job: JobRecord, page_size: int, offsets: dict[str, int]) -> jobs_pb2.SyncResult:
        result = result_message(job, self.store.result_summary(job.id))
        summary_counts = {kind.name: getattr(result, f"{kind.name}_total") for kind in KINDS}
        next_offsets, more = {}, False
        for kind in RECORD_MESSAGES:
            start = offsets.get(kind, 0)
            rows = self.store.records(job.id, kind, start, page_size or None)
            getattr(result, kind).extend(record_message(kind, r) for r in rows)
            next_offsets[kind] = start + len(getattr(result, kind))
            more = more or next_offsets[kind] < summary_counts[kind]
        if page_size and more:
            result.next_page_token = page_tokens.encode(next_offsets)
        return result

    async def WatchJob(self, request, context) -> AsyncIterator[jobs_pb2.JobEvent]:
        """Replays the job's events after ``after_sequence`` (or sends the current state), then follows it.

        One coroutine per watcher, no thread; WatchHub reads the store once per watched job for all of them.
        """
        job = await self._get(request.job_id, context)
        last = request.after_sequence
        if last == 0 or last > job.version:
            last = job.version
            yield jobs_pb2.JobEvent(
                sequence=job.version, time=timestamp(await self._written_at(job)), job=job_message(job)
            )
            if job.finished:
                return
        if job.finished and last >= job.version:
            return  # resuming after a finished job's last event: nothing more will come
        try:
            async for sequence, at, snapshot in self.watch_hub.follow(job.id, last):
                record = JobRecord(**snapshot)
                self.cache.seen(record)  # what a watcher was told, GetJob answers too
                yield jobs_pb2.JobEvent(sequence=sequence, time=timestamp(at), job=job_message(record))
        except LookupError:
            raise job_not_found(job.id) from None  # deleted while watched

    async def ListJobs(self, request, context):
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise invalid_argument("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}, got {request.page_size}")
        if request.skip < 0:
            raise invalid_argument("skip", f"must not be negative, got {request.skip}")
        if request.state and request.state not in STATE_NAME:
            raise invalid_argument("state", f"unknown job state {request.state}")
        if request.type and request.type not in TYPE_NAME:
            raise invalid_argument("type", f"unknown job type {request.type}")
        try:
            after = page_tokens.decode(request.page_token, _list_position) if request.page_token else None
        except ValueError:
            raise invalid_argument("pageToken", "not a token this server returned") from None
        page = await asyncio.to_thread(
            self.store.list_jobs,
            principal=self._caller(context),
            state=STATE_NAME.get(request.state),
            job_type=TYPE_NAME[request.type] if request.type else None,
            page_size=request.page_size or DEFAULT_PAGE_SIZE,
            after=after,
            skip=request.skip,
        )
        next_page_token = page_tokens.encode(list(page.next_position)) if page.next_position else ""
        return jobs_pb2.ListJobsResponse(
            jobs=[job_message(j) for j in page.jobs], next_page_token=next_page_token, total_size=page.total
        )

    async def CancelJob(self, request, context):
        await self._get(request.job_id, context)
        job = await asyncio.to_thread(self.store.request_cancel, request.job_id)
        if job is None:
            raise job_not_found(request.job_id)
        self.runner.stop_here(job.id)
        return job_message(job)

    async def DeleteJob(self, request, context) -> empty_pb2.Empty:
        job = await self._get(request.job_id, context)
        if not job.finished:
            await asyncio.to_thread(self.store.request_cancel, job.id)
            self.runner.stop_here(job.id)
            deadline = time.monotonic() + DELETE_CANCEL_WAIT_S
            while not job.finished and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                job = await asyncio.to_thread(self.store.get, job.id) or job
            if not job.finished:
                raise ChainsyncError(
                    "JOB_STILL_RUNNING",
                    f"job {job.id} was asked to cancel but has not stopped yet; try the delete again",
                    {"jobId": job.id, "state": job.state},
                )
        await asyncio.to_thread(self.store.delete, job.id)
        return empty_pb2.Empty()
