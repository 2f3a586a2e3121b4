"""The FastAPI app: each JSON endpoint is one call to the gRPC JobService.

One grpc.aio channel serves every request, so one bridge process handles many
pollers without a thread per request. JSON shapes are those of
ASYNC-BLOCKCHAIN-SYNC.md; block numbers and uint256 values are decimal strings.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from rest_bridge.errors import error_response, from_rpc_error
from rest_bridge.models import StartSyncBody

MAX_BODY_BYTES = 64 * 1024
TYPE_NAMES = {v: k for k, v in jobs_pb2.JobType.items()}
STATE_NAMES = {v: k for k, v in jobs_pb2.JobState.items()}


def _lower(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


def job_json(job: jobs_pb2.Job) -> dict[str, Any]:
    """The spec's job object: id, type, status, progress, message, times, plus range, stats and error."""
    out: dict[str, Any] = {
        "id": job.id,
        "type": _lower(TYPE_NAMES[job.type], "JOB_TYPE_"),
        "status": _lower(STATE_NAMES[job.state], "JOB_STATE_"),
        "progress": job.progress,
        "message": job.message,
        "createdAt": job.create_time.ToJsonString(),
    }
    if job.HasField("start_time"):
        out["startedAt"] = job.start_time.ToJsonString()
    if job.HasField("end_time"):
        out["endedAt"] = job.end_time.ToJsonString()
        if job.state == jobs_pb2.JOB_STATE_COMPLETED:
            out["completedAt"] = job.end_time.ToJsonString()
    if job.to_block:
        out["fromBlock"] = str(job.from_block)
        out["toBlock"] = str(job.to_block)
    out["stats"] = json_format.MessageToDict(job.stats, always_print_fields_with_no_presence=True)
    if job.HasField("error"):
        out["error"] = job.error.message
        out["errorCode"] = job.error.code
    return out


def record_json(record: Any) -> dict[str, Any]:
    out = json_format.MessageToDict(record, always_print_fields_with_no_presence=True)
    out["created"] = out.get("created")  # null when the creating event is outside the range
    return out


def result_json(result: jobs_pb2.SyncResult) -> dict[str, Any]:
    return {
        "success": True,
        "result": {
            "proposals": [record_json(r) for r in result.proposals],
            "petitions": [record_json(r) for r in result.petitions],
            "reports": [record_json(r) for r in result.reports],
            "fromBlock": str(result.from_block),
            "toBlock": str(result.to_block),
            "toBlockHash": result.to_block_hash,
            "chainId": str(result.chain_id),
            "eventsCount": result.events_count,
            "processingTime": result.processing_time_ms,
        },
        "completedAt": result.complete_time.ToJsonString(),
    }


def _start_request(body: StartSyncBody) -> jobs_pb2.StartSyncRequest:
    request = jobs_pb2.StartSyncRequest(
        is_full_sync=body.isFullSync,
        type=jobs_pb2.JobType.Value("JOB_TYPE_" + body.type.upper()),
        request_id=body.requestId or "",
        incremental=body.incremental,
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


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(p for p in loc if not p.isdigit() and p not in ("int", "str", "constrained-str")) or "body"
    kind = first.get("type", "")
    if kind == "missing" and field == "body":
        return "body", "a JSON body is required (send {} for the defaults)"
    if kind == "json_invalid":
        return "body", "the body is not valid JSON"
    if kind == "extra_forbidden":
        return field, f"{field}: unknown field"
    return field, f"{field}: {first.get('msg', 'invalid value')}"


def create_app(grpc_target: str) -> FastAPI:
    """The bridge app, calling the JobService at grpc_target (host:port)."""
    channels: dict[str, grpc.aio.Channel] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        channels["jobs"] = grpc.aio.insecure_channel(grpc_target)
        yield
        await channels["jobs"].close()

    app = FastAPI(
        title="chainsync REST bridge",
        version="1",
        description="JSON endpoints of the chainsync JobService (ASYNC-BLOCKCHAIN-SYNC.md).",
        lifespan=lifespan,
    )

    def stub() -> jobs_pb2_grpc.JobServiceStub:
        return jobs_pb2_grpc.JobServiceStub(channels["jobs"])

    @app.middleware("http")
    async def cap_body_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return error_response(413, f"body: larger than {MAX_BODY_BYTES} bytes", "BODY_TOO_LARGE", {"field": "body"})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _validation_message(exc)
        return error_response(400, message, "INVALID_ARGUMENT", {"field": field})

    @app.exception_handler(grpc.aio.AioRpcError)
    async def on_rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        return from_rpc_error(exc, grpc_target)

    @app.post("/api/blockchain/sync", status_code=202)
    async def start_sync(body: StartSyncBody = Body(...)) -> JSONResponse:
        response = await stub().StartSync(_start_request(body))
        return JSONResponse(
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

    @app.get("/api/blockchain/sync/status/{job_id}")
    async def job_status(job_id: str) -> dict[str, Any]:
        job = await stub().GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
        return {"success": True, "job": job_json(job)}

    @app.get("/api/blockchain/sync/result/{job_id}")
    async def job_result(job_id: str) -> dict[str, Any]:
        return result_json(await stub().GetResult(jobs_pb2.GetResultRequest(job_id=job_id)))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"success": True}

    return app


def run(grpc_target: str, http_addr: str) -> None:
    import uvicorn

    host, port = http_addr.rsplit(":", 1)
    print(f"chainsync REST bridge on http://{host}:{port} -> gRPC {grpc_target}", flush=True)
    uvicorn.run(create_app(grpc_target), host=host, port=int(port), log_level="warning")


__all__ = ["create_app", "run"]
