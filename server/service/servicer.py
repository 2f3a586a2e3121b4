"""The gRPC JobService (grpc.aio), modelled on grpc's route_guide servicer.

Owns: validating requests (bad input never reaches the thread pool), turning
store records into protobuf messages, and raising every failure as a canonical
status code with a google.rpc.ErrorInfo reason. Blocking store calls run in
worker threads so the event loop stays free for many watchers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf import empty_pb2, json_format, timestamp_pb2

from server import logs
from server.errors import ChainsyncError, invalid_argument, job_not_found
from server.jobs.store import JobPosition, JobRecord, JobStore
from server.service import page_tokens
from server.service.auth import Tokens
from server.service.watch import WatchHub

log = logging.getLogger("chainsync.servicer")

MAX_BLOCKS_BACK = 100_000_000
MAX_TIMEOUT_S = 24 * 60 * 60
MAX_CONFIRMATIONS = 10_000
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # used with fullmatch: no trailing newline slips through
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")  # fullmatch
WATCH_POLL_S = 0.05  # how often a watched job is looked up (once for all its watchers)
MAX_RESULT_PAGE = 10_000
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
DELETE_CANCEL_WAIT_S = 5.0

TYPE_NAMES = {
    jobs_pb2.JOB_TYPE_UNSPECIFIED: "blockchain_sync",
    jobs_pb2.JOB_TYPE_BLOCKCHAIN_SYNC: "blockchain_sync",
    jobs_pb2.JOB_TYPE_PROPOSALS_SYNC: "proposals_sync",
    jobs_pb2.JOB_TYPE_PETITIONS_SYNC: "petitions_sync",
    jobs_pb2.JOB_TYPE_REPORTS_SYNC: "reports_sync",
}
TYPE_ENUMS = {name: enum for enum, name in TYPE_NAMES.items() if enum}
STATE_ENUMS = {
    "pending": jobs_pb2.JOB_STATE_PENDING,
    "running": jobs_pb2.JOB_STATE_RUNNING,
    "completed": jobs_pb2.JOB_STATE_COMPLETED,
    "failed": jobs_pb2.JOB_STATE_FAILED,
    "cancelled": jobs_pb2.JOB_STATE_CANCELLED,
}
STATE_NAMES = {enum: name for name, enum in STATE_ENUMS.items()}
RECORD_MESSAGES = {"proposals": jobs_pb2.Proposal, "petitions": jobs_pb2.Petition, "reports": jobs_pb2.Report}


def validate_start(request: jobs_pb2.StartSyncRequest, default_timeout_s: int) -> tuple[str, dict[str, Any], int]:
    """(job type, normalized request in JSON form, timeout) or INVALID_ARGUMENT naming the field."""
    if request.type not in TYPE_NAMES:
        raise invalid_argument("type", f"unknown job type {request.type}")
    body: dict[str, Any] = {}
    explicit_range = request.HasField("from_block") or request.HasField("to_block")
    if request.HasField("blocks_back"):
        if not 1 <= request.blocks_back <= MAX_BLOCKS_BACK:
            raise invalid_argument(
                "blocksBack",
                f"must be between 1 and {MAX_BLOCKS_BACK:,}, got {request.blocks_back}",
                "INVALID_BLOCKS_BACK",
            )
        if explicit_range:
            raise invalid_argument("blocksBack", "cannot be combined with fromBlock/toBlock")
        if not request.is_full_sync:  # with isFullSync it is ignored, as older clients send both
            body["blocksBack"] = request.blocks_back
    if request.is_full_sync:
        if explicit_range:
            raise invalid_argument("isFullSync", "cannot be combined with fromBlock/toBlock")
        body["isFullSync"] = True
    if request.HasField("from_block"):
        body["fromBlock"] = request.from_block
    if request.HasField("to_block"):
        body["toBlock"] = request.to_block
    if explicit_range and "fromBlock" in body and "toBlock" in body and body["fromBlock"] > body["toBlock"]:
        raise invalid_argument("fromBlock", f"{body['fromBlock']} is after toBlock {body['toBlock']}", "INVALID_RANGE")
    if request.incremental:
        if request.HasField("blocks_back") or request.is_full_sync or request.HasField("from_block"):
            raise invalid_argument("incremental", "cannot be combined with blocksBack, isFullSync or fromBlock")
        body["incremental"] = True
    if request.HasField("confirmations"):
        if request.confirmations > MAX_CONFIRMATIONS:
            raise invalid_argument("confirmations", f"must be at most {MAX_CONFIRMATIONS}, got {request.confirmations}")
        body["confirmations"] = request.confirmations
    timeout_s = default_timeout_s
    if request.HasField("timeout_seconds"):
        if not 1 <= request.timeout_seconds <= MAX_TIMEOUT_S:
            raise invalid_argument(
                "timeoutSeconds", f"must be between 1 and {MAX_TIMEOUT_S}, got {request.timeout_seconds}"
            )
        timeout_s = request.timeout_seconds
        body["timeoutSeconds"] = timeout_s
    if request.request_id and not REQUEST_ID_RE.fullmatch(request.request_id):
        raise invalid_argument("requestId", "must be 1 to 128 letters, digits or . _ : -")
    return TYPE_NAMES[request.type], body, timeout_s


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


def check_job_id(job_id: str) -> None:
    if not UUID_RE.fullmatch(job_id):
        raise invalid_argument("jobId", f"{job_id[:64]!r} is not a job id (a UUID)", "INVALID_JOB_ID")


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def job_message(job: JobRecord) -> jobs_pb2.Job:
    msg = jobs_pb2.Job(
        id=job.id,
        type=TYPE_ENUMS[job.type],
        state=STATE_ENUMS[job.state],
        progress=job.progress,
        message=job.message,
        create_time=_timestamp(job.created_at),
        start_time=_timestamp(job.started_at),
        end_time=_timestamp(job.ended_at),
        from_block=job.from_block or 0,
        to_block=job.to_block or 0,
        request=json_format.ParseDict(
            {k: v for k, v in job.request.items() if k != logs.REQUEST_ID_KEY}, jobs_pb2.StartSyncRequest()
        ),
        stats=json_format.ParseDict(job.stats, jobs_pb2.JobStats(), ignore_unknown_fields=True),
    )
    if job.error_code:
        msg.error.code = job.error_code
        msg.error.message = job.error_message or ""
    return msg


def record_message(kind: str, record: dict[str, Any]) -> Any:
    return json_format.ParseDict({k: v for k, v in record.items() if v is not None}, RECORD_MESSAGES[kind]())


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        wake_runner: Callable[[], None],
        default_timeout_s: int,
        tokens: Tokens | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.watch_hub = WatchHub(store, WATCH_POLL_S)
        self.wake_runner = wake_runner
        self.default_timeout_s = default_timeout_s

    def _caller(self, context: grpc.aio.ServicerContext) -> str | None:
        """Whose jobs the caller may see: its token's name when jobs are scoped per token, else None (all)."""
        if self.tokens is None or not self.tokens.scoped:
            return None
        return self.tokens.principal(dict(context.invocation_metadata() or ()).get("authorization"))

    async def _get(self, job_id: str, context: grpc.aio.ServicerContext) -> JobRecord:
        check_job_id(job_id)
        job = await asyncio.to_thread(self.store.get, job_id)
        caller = self._caller(context)
        if job is None or (caller is not None and job.principal != caller):
            raise job_not_found(job_id)  # another token's job does not exist for this caller
        return job

    async def _written_at(self, job: JobRecord) -> float:
        """When the job's current version was written: the same time a replay of that event carries."""
        events = await asyncio.to_thread(self.store.events, job.id, job.version - 1)
        return events[0][1] if events and events[0][0] == job.version else time.time()

    async def StartSync(self, request, context):
        job_type, body, timeout_s = validate_start(request, self.default_timeout_s)
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
            self.wake_runner()
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

    async def GetJob(self, request, context):
        return job_message(await self._get(request.job_id, context))

    async def GetResult(self, request, context):
        job = await self._get(request.job_id, context)
        if job.state != "completed":
            raise ChainsyncError(
                "JOB_NOT_COMPLETED",
                f"job {job.id} is {job.state}; its result is available once it is completed",
                {"jobId": job.id, "state": job.state},
            )
        if not 0 <= request.page_size <= MAX_RESULT_PAGE:
            raise invalid_argument("pageSize", f"must be between 0 (everything) and {MAX_RESULT_PAGE}")
        try:
            offsets = page_tokens.decode(request.page_token, _result_offsets) if request.page_token else {}
        except ValueError:
            raise invalid_argument("pageToken", "not a token this server returned") from None
        return await asyncio.to_thread(self._result, job, request.page_size, offsets)

    def _result(self, job: JobRecord, page_size: int, offsets: dict[str, int]) -> jobs_pb2.SyncResult:
        summary = self.store.result_summary(job.id)
        result = jobs_pb2.SyncResult(
            job_id=job.id,
            from_block=summary.from_block,
            to_block=summary.to_block,
            to_block_hash=summary.to_block_hash,
            chain_id=summary.chain_id,
            processing_time_ms=summary.processing_time_ms,
            complete_time=_timestamp(job.ended_at),
            events_count=summary.events_count,
            proposals_total=summary.record_counts.get("proposals", 0),
            petitions_total=summary.record_counts.get("petitions", 0),
            reports_total=summary.record_counts.get("reports", 0),
        )
        next_offsets, more = {}, False
        for kind in RECORD_MESSAGES:
            start = offsets.get(kind, 0)
            rows = self.store.records(job.id, kind, start, page_size or None)
            getattr(result, kind).extend(record_message(kind, r) for r in rows)
            next_offsets[kind] = start + len(getattr(result, kind))
            more = more or next_offsets[kind] < summary.record_counts.get(kind, 0)
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
                sequence=job.version, time=_timestamp(await self._written_at(job)), job=job_message(job)
            )
            if job.finished:
                return
        if job.finished and last >= job.version:
            return  # resuming after a finished job's last event: nothing more will come
        try:
            async for sequence, at, snapshot in self.watch_hub.follow(job.id, last):
                yield jobs_pb2.JobEvent(sequence=sequence, time=_timestamp(at), job=job_message(JobRecord(**snapshot)))
        except LookupError:
            raise job_not_found(job.id) from None  # deleted while watched

    async def ListJobs(self, request, context):
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise invalid_argument("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}, got {request.page_size}")
        if request.skip < 0:
            raise invalid_argument("skip", f"must not be negative, got {request.skip}")
        if request.state and request.state not in STATE_NAMES:
            raise invalid_argument("state", f"unknown job state {request.state}")
        if request.type and request.type not in TYPE_NAMES:
            raise invalid_argument("type", f"unknown job type {request.type}")
        try:
            after = page_tokens.decode(request.page_token, _list_position) if request.page_token else None
        except ValueError:
            raise invalid_argument("pageToken", "not a token this server returned") from None
        page = await asyncio.to_thread(
            self.store.list_jobs,
            principal=self._caller(context),
            state=STATE_NAMES.get(request.state),
            job_type=TYPE_NAMES[request.type] if request.type else None,
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
        return job_message(job)

    async def DeleteJob(self, request, context) -> empty_pb2.Empty:
        job = await self._get(request.job_id, context)
        if not job.finished:
            await asyncio.to_thread(self.store.request_cancel, job.id)
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
