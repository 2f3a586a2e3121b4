"""The spec's sync routes under /api/blockchain/sync: start a job, its status, its result, its events.

Each is one JobService call (StartSync, GetJob, GetResult) or one stream
(GetResult pages as NDJSON, WatchJob as server-sent events). The status route
is the product's hottest path: answered from the bridge's StatusMirror
(rest_bridge/status_mirror.py) when it holds the job, else one GetJob.
"""

from __future__ import annotations

from typing import Annotated

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from rest_bridge import models
from rest_bridge.convert import FastJSON, job_json, result_json, rfc3339
from rest_bridge.errors import BadRequest
from rest_bridge.jobservice import UNARY_TIMEOUT_S, metadata_of, status_mirror_of, stub_of
from rest_bridge.models import JobId, is_number
from rest_bridge.openapi import SECURED, error_responses
from rest_bridge.streams import EventStream, job_events, ndjson_records
from server.config import DEFAULT_SSE_PING_S
from server.kinds import KIND_NAMES
from server.states import TERMINAL_ENUMS, TYPE_ENUM

NDJSON = "application/x-ndjson"
NDJSON_PAGE = 500  # records of each kind per GetResult page while streaming NDJSON

router = APIRouter(default_response_class=FastJSON)


def start_request(body: models.StartSyncBody, request_id: str | None) -> jobs_pb2.StartSyncRequest:
    request = jobs_pb2.StartSyncRequest(
        is_full_sync=body.isFullSync,
        type=TYPE_ENUM[body.type],
        request_id=request_id or "",
        incremental=body.incremental,
        after_job_id=body.after or "",
    )
    for field, value in [
        ("blocks_back", body.blocksBack),
        ("from_block", body.fromBlock),
        ("to_block", body.toBlock),
        ("confirmations", body.confirmations),
        ("timeout_seconds", body.timeoutSeconds),
    ]:
        if value is not None:
            setattr(request, field, int(value))
    return request


@router.post(
    "/api/blockchain/sync",
    status_code=202,
    response_model=models.StartResponse,
    tags=["sync"],
    openapi_extra=SECURED,
    summary="Start a sync job (returns its id at once)",
    responses=error_responses(404, 409, 413, 429),
)
async def start_sync(
    request: Request,
    body: Annotated[models.StartSyncBody, Body(...)],
    idempotency_key: Annotated[
        models.RequestId | None,
        Header(
            alias="Idempotency-Key",
            description="Same as `requestId`: the same key within 24 h returns the first job.",
        ),
    ] = None,
) -> Response:
    if idempotency_key and body.requestId and idempotency_key != body.requestId:
        raise BadRequest("Idempotency-Key", "Idempotency-Key: differs from the body's requestId")
    start = start_request(body, idempotency_key or body.requestId)
    response = await stub_of(request).StartSync(start, metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S)
    return FastJSON(
        {
            "success": True,
            "jobId": response.job_id,
            "message": response.message,
            "statusUrl": response.status_url,
            "resultUrl": response.result_url,
            "job": job_json(response.job),
        },
        status_code=202,
        headers={"Location": response.status_url},
    )


@router.get(
    "/api/blockchain/sync/status/{jobId}",
    response_model=models.StatusResponse,
    tags=["sync"],
    openapi_extra=SECURED,
    summary="A job's status and progress",
    responses=error_responses(404),
)
async def job_status(request: Request, job_id: JobId) -> Response:
    mirror, authorization = status_mirror_of(request), request.headers.get("authorization", "")
    body = mirror.answer(job_id, authorization)
    request.app.state.metrics.status_answers.labels("server" if body is None else "memory").inc()
    if body is None:
        metadata = metadata_of(request)
        job = await stub_of(request).GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata, timeout=UNARY_TIMEOUT_S
        )
        body = mirror.keep(job, authorization, metadata)
    return Response(body, media_type="application/json")


@router.get(
    "/api/blockchain/sync/result/{jobId}",
    response_model=models.ResultResponse,
    tags=["sync"],
    openapi_extra=SECURED,
    summary="The records of a completed job",
    description=(
        "The spec's shape by default, every record at once. With `pageSize`, at most that many records of "
        "each kind; `nextPageToken` continues. With `Accept: application/x-ndjson`, a stream of one JSON "
        f'object per line: `{{"kind": "{KIND_NAMES[0]}", ...record}}` for each record (pages interleave the kinds, '
        'each kind in order), then `{"kind": "summary", ...}`; an error between pages ends the stream '
        'with a `{"kind": "error", ...}` line.'
    ),
    responses={
        **error_responses(404, 409),
        200: {"content": {NDJSON: {"schema": {"type": "string"}}}, "description": "The result"},
    },
)
async def job_result(
    request: Request,
    job_id: JobId,
    page_size: Annotated[
        int | None, Query(alias="pageSize", ge=1, le=10_000, description="At most this many records of each kind.")
    ] = None,
    page_token: Annotated[
        str | None, Query(alias="pageToken", max_length=1024, description="`nextPageToken` of the previous page.")
    ] = None,
) -> Response:
    streaming = NDJSON in request.headers.get("accept", "")
    size = page_size or (NDJSON_PAGE if streaming else 0)
    stub, metadata = stub_of(request), metadata_of(request)

    async def fetch(token: str) -> jobs_pb2.SyncResult:
        page = jobs_pb2.GetResultRequest(job_id=job_id, page_size=size, page_token=token)
        return await stub.GetResult(page, metadata=metadata, timeout=UNARY_TIMEOUT_S)

    first = await fetch(page_token or "")
    if not streaming:
        return FastJSON(result_json(first))
    target = request.app.state.settings.grpc_addr
    body = ndjson_records(fetch, first, size, rfc3339(first.complete_time), target)
    return StreamingResponse(body, media_type=NDJSON)


@router.get(
    "/api/blockchain/sync/events/{jobId}",
    tags=["sync"],
    openapi_extra=SECURED,
    response_class=EventStream,
    status_code=200,
    summary="Server-sent events of a job's progress (mirrors WatchJob)",
    description=(
        "`text/event-stream`: an `event: job` with `id: <sequence>` and the status endpoint's job object as "
        "`data` at once and on every change; `event: end` after the job's last event, then the stream closes; "
        f"`: ping` comments when idle (every {DEFAULT_SSE_PING_S:.0f} s by default). Reconnect with `Last-Event-ID` "
        "(browsers do it by themselves) or `?lastEventId=` to get exactly the events missed. When nothing "
        "is left to send (the job ended and its last event was seen) the answer is 204, which tells a browser "
        "to stop reconnecting. A gRPC error after the stream started is an `event: error` with the error body."
    ),
    responses={
        **error_responses(404),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "The events"},
        204: {"description": "The job has ended and the client has seen its last event"},
    },
)
async def job_events_stream(
    request: Request,
    job_id: JobId,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20, description="Resume after this event id.")
    ] = None,
    last_event_query: Annotated[
        int | None, Query(alias="lastEventId", ge=0, le=2**64 - 1, description="Same as Last-Event-ID.")
    ] = None,
) -> Response:
    after = last_event_query or 0
    if last_event_id:
        if not is_number(last_event_id) or int(last_event_id) >= 2**64:
            raise BadRequest("Last-Event-ID", "Last-Event-ID: must be an event id this stream sent")
        after = int(last_event_id)
    settings = request.app.state.settings
    stub, metadata = stub_of(request), metadata_of(request)
    if not after:
        call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), metadata=metadata)
        first = await call.read()  # errors (unknown job, bad token) are HTTP errors, before the stream starts
        if first is grpc.aio.EOF:
            return Response(status_code=204)
        return EventStream(job_events(call, first, settings.sse_ping_s, settings.grpc_addr))
    if await seen_last_event(stub, metadata, job_id, after):
        return Response(status_code=204)
    call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=after), metadata=metadata)
    return EventStream(job_events(call, None, settings.sse_ping_s, settings.grpc_addr))


async def seen_last_event(
    stub: jobs_pb2_grpc.JobServiceStub, metadata: tuple[tuple[str, str], ...], job_id: str, after: int
) -> bool:
    """Whether the job has ended and the client has seen its last event (sequence ``after`` or later).

    WatchJob after an ended job's last sequence would wait for an event that never comes: ask for the last one.
    """
    job = await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata, timeout=UNARY_TIMEOUT_S)
    if job.state not in TERMINAL_ENUMS:
        return False
    probe = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), metadata=metadata, timeout=UNARY_TIMEOUT_S)
    try:
        final = await probe.read()
    finally:
        probe.cancel()
    return final is grpc.aio.EOF or final.sequence <= after
