"""The FastAPI app: each JSON endpoint is one call (or one stream) of the gRPC JobService.

One grpc.aio channel serves every request, so one bridge process handles many
pollers without a thread per request; nothing on the event loop blocks. JSON
shapes are those of ASYNC-BLOCKCHAIN-SYNC.md (documented in
rest_bridge/models.py and at /openapi.json); errors are design.md's
``{"success": false, "error", "code", "details"}``; docs/rest-api.md has the
whole contract and the choices made.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from fastapi import Body, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from rest_bridge import models
from rest_bridge.convert import STATE_ENUMS, TERMINAL, TYPE_ENUMS, job_json, result_json
from rest_bridge.errors import FastJSON, error_response, from_rpc_error
from rest_bridge.metrics import BridgeMetrics, HttpMetrics
from rest_bridge.middleware import BodySizeLimit, RequestIds
from rest_bridge.streams import EventStream, job_events, ndjson_records
from server import logs

log = logging.getLogger("chainsync.bridge")

MAX_BODY_BYTES = 64 * 1024
UNARY_TIMEOUT_S = 30.0  # DeleteJob may wait 5 s for a cancel; nothing else takes long
NDJSON_PAGE = 500  # records of each kind per GetResult page while streaming NDJSON
DEFAULT_PING_S = 15.0
NDJSON = "application/x-ndjson"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),  # the server sends a whole result in one message
    ("grpc.keepalive_time_ms", 30_000),  # long WatchJob streams stay alive through proxies
    ("grpc.keepalive_timeout_ms", 10_000),
]

STATIC_DIR = FilePath(__file__).resolve().parent / "static"
# Only this origin's script, style and API: no inline script, nothing fetched from elsewhere.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

JobId = Annotated[str, Path(alias="jobId", description="The job id (a UUIDv4) that start returned.")]
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "`Authorization: Bearer <token>`, passed through to the gRPC server as metadata. Needed when "
    "the server runs with CHAINSYNC_API_TOKEN; /healthz, /openapi.json and /docs are open.",
}
SECURED = {"security": [{"bearer": []}]}  # openapi_extra of every JobService route


def metadata_of(request: Request) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata of a call: the client's Authorization header, passed through as it came, and
    the request id (``x-request-id``) that the RequestIds middleware put in the log context.

    Read straight from the request rather than through a FastAPI dependency: on the polling path a
    dependency costs more than the gRPC call's own Python work.
    """
    auth = request.headers.get("authorization")
    if auth and not auth.isascii():
        raise BadRequest("Authorization", "Authorization: a bearer token is ASCII text")
    request_id = logs.request_id_var.get()
    if auth:
        return (("authorization", auth), ("x-request-id", request_id)) if request_id else (("authorization", auth),)
    return (("x-request-id", request_id),) if request_id else ()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Bad input: the `details.field` names what (INVALID_ARGUMENT, INVALID_JOB_ID, ...)",
        401: "Missing or wrong bearer token (MISSING_TOKEN, INVALID_TOKEN)",
        404: "No such job (JOB_NOT_FOUND)",
        409: "The job is not in a state that allows this (JOB_NOT_COMPLETED with `details.state`, JOB_STILL_RUNNING)",
        413: "Request body over 64 KiB (BODY_TOO_LARGE)",
        429: "The server is overloaded (RESOURCE_EXHAUSTED)",
        500: "Unexpected error (INTERNAL)",
        503: "The gRPC server is unreachable (GRPC_UNAVAILABLE) or the node is (RPC_UNAVAILABLE)",
        504: "The gRPC server did not answer in time (GRPC_TIMEOUT)",
    }
    return {
        s: {"model": models.ErrorBody, "description": text[s]} for s in sorted({*statuses, 400, 401, 500, 503, 504})
    }


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    where = loc[0] if loc else "body"
    field = loc[1] if len(loc) > 1 else "body"
    kind = first.get("type", "")
    if where == "body" and field == "body" and kind == "missing":
        return "body", "a JSON body is required (send {} for the defaults)"
    if kind == "json_invalid":
        return "body", "the body is not valid JSON"
    if kind == "model_attributes_type" or (where == "body" and len(loc) == 1):
        return "body", "the body must be a JSON object"
    if kind == "extra_forbidden":
        return field, f"{field}: unknown field"
    return field, f"{field}: {first.get('msg', 'invalid value')}"


def _start_request(body: models.StartSyncBody, request_id: str | None) -> jobs_pb2.StartSyncRequest:
    request = jobs_pb2.StartSyncRequest(
        is_full_sync=body.isFullSync,
        type=TYPE_ENUMS[body.type],
        request_id=request_id or "",
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


class BadRequest(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit() also accepts '²' and other digits int() refuses)."""
    return text.isascii() and text.isdigit()


def _list_page(page: int | None, page_token: str | None) -> tuple[int, str]:
    """(page number, server page token) from ``page`` or the bridge's ``pageToken`` (``<page>.<server token>``)."""
    if page_token:
        if page is not None:
            raise BadRequest("page", "page: cannot be combined with pageToken")
        number, _, token = page_token.partition(".")
        if not _is_number(number) or int(number) < 2 or not token:
            raise BadRequest("pageToken", "pageToken: not a token this bridge returned")
        return int(number), token
    return page or 1, ""


def create_app(
    grpc_target: str,
    *,
    cors_origins: tuple[str, ...] = (),
    sse_ping_s: float = DEFAULT_PING_S,
    tls_ca: bytes | None = None,
    access_log: bool = False,
) -> FastAPI:
    """The bridge app, calling the JobService at grpc_target (host:port); over TLS when tls_ca
    (the PEM certificate(s) to trust) is given; with access_log, one log line per request."""
    jobs: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca)
            channel = grpc.aio.secure_channel(grpc_target, credentials, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(grpc_target, options=CHANNEL_OPTIONS)
        jobs["stub"] = jobs_pb2_grpc.JobServiceStub(channel)
        yield
        await channel.close()

    app = FastAPI(
        title="chainsync REST bridge",
        version="1",
        description=(
            "The JSON endpoints of ASYNC-BLOCKCHAIN-SYNC.md, each served by the chainsync gRPC JobService "
            "(proto/chainsync/v1/jobs.proto). Errors are `{success: false, error, code, details}` with the HTTP "
            "status mapped from the gRPC code (design.md). Block numbers and uint256 values are decimal strings. "
            "Every answer carries `X-Request-ID`: the request's own (1 to 128 printable ASCII characters; another "
            "value is a 400 naming X-Request-ID) or a fresh UUIDv4; the server's logs carry it too."
        ),
        lifespan=lifespan,
        default_response_class=FastJSON,
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestIds, access_log=access_log)  # outside BodySizeLimit: its 413 carries the id too
    metrics = BridgeMetrics.create()  # this app's own registry
    app.add_middleware(HttpMetrics, metrics=metrics)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                "Accept",
                "X-Request-ID",
            ],
            expose_headers=["Location", "X-Request-ID"],
            max_age=600,
        )

    def stub() -> jobs_pb2_grpc.JobServiceStub:
        return jobs["stub"]

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _validation_message(exc)
        return error_response(400, message, "INVALID_ARGUMENT", {"field": field})

    @app.exception_handler(BadRequest)
    async def on_bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return error_response(400, str(exc), "INVALID_ARGUMENT", {"field": exc.field})

    @app.exception_handler(grpc.aio.AioRpcError)
    async def on_rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        metrics.grpc_error(exc.code().name)
        return from_rpc_error(exc, grpc_target)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8, nested too deep, ...)
            return error_response(
                400, "body: not a JSON object this API can read", "INVALID_ARGUMENT", {"field": "body"}
            )
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return error_response(exc.status_code, message, code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        # This handler runs outside the middleware that adds X-Request-ID to the other answers.
        return error_response(
            500,
            f"internal error in the REST bridge ({type(exc).__name__})",
            "INTERNAL",
            headers={"X-Request-ID": logs.current_request_id() or ""},
        )

    @app.post(
        "/api/blockchain/sync",
        status_code=202,
        response_model=models.StartResponse,
        tags=["sync"],
        openapi_extra=SECURED,
        summary="Start a sync job (returns its id at once)",
        responses=_errors(413, 429),
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
        start = _start_request(body, idempotency_key or body.requestId)
        response = await stub().StartSync(start, metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S)
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

    @app.get(
        "/api/blockchain/sync/status/{jobId}",
        response_model=models.StatusResponse,
        tags=["sync"],
        openapi_extra=SECURED,
        summary="A job's status and progress",
        responses=_errors(404),
    )
    async def job_status(request: Request, job_id: JobId) -> Response:
        job = await stub().GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
        )
        return FastJSON({"success": True, "job": job_json(job)})

    @app.get(
        "/api/blockchain/sync/result/{jobId}",
        response_model=models.ResultResponse,
        tags=["sync"],
        openapi_extra=SECURED,
        summary="The records of a completed job",
        description=(
            "The spec's shape by default, every record at once. With `pageSize`, at most that many records of "
            "each kind; `nextPageToken` continues. With `Accept: application/x-ndjson`, a stream of one JSON "
            'object per line: `{"kind": "proposals", ...record}` for each record (pages interleave the kinds, '
            'each kind in order), then `{"kind": "summary", ...}`; an error between pages ends the stream '
            'with a `{"kind": "error", ...}` line.'
        ),
        responses={
            **_errors(404, 409),
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
        first = await stub().GetResult(
            jobs_pb2.GetResultRequest(job_id=job_id, page_size=size, page_token=page_token or ""),
            metadata=metadata_of(request),
            timeout=UNARY_TIMEOUT_S,
        )
        if not streaming:
            return FastJSON(result_json(first))

        async def fetch(token: str) -> jobs_pb2.SyncResult:
            return await stub().GetResult(
                jobs_pb2.GetResultRequest(job_id=job_id, page_size=size, page_token=token),
                metadata=metadata_of(request),
                timeout=UNARY_TIMEOUT_S,
            )

        body = ndjson_records(fetch, first, size, first.complete_time.ToJsonString(), grpc_target)
        return StreamingResponse(body, media_type=NDJSON)

    @app.get(
        "/api/blockchain/sync/events/{jobId}",
        tags=["sync"],
        openapi_extra=SECURED,
        response_class=EventStream,
        status_code=200,
        summary="Server-sent events of a job's progress (mirrors WatchJob)",
        description=(
            "`text/event-stream`: an `event: job` with `id: <sequence>` and the status endpoint's job object as "
            "`data` at once and on every change; `event: end` after the job's last event, then the stream closes; "
            f"`: ping` comments when idle (every {DEFAULT_PING_S:.0f} s by default). Reconnect with `Last-Event-ID` "
            "(browsers do it by themselves) or `?lastEventId=` to get exactly the events missed. When nothing "
            "is left to send (the job ended and its last event was seen) the answer is 204, which tells a browser "
            "to stop reconnecting. A gRPC error after the stream started is an `event: error` with the error body."
        ),
        responses={
            **_errors(404),
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
            if not _is_number(last_event_id) or int(last_event_id) >= 2**64:
                raise BadRequest("Last-Event-ID", "Last-Event-ID: must be an event id this stream sent")
            after = int(last_event_id)
        if not after:
            call = stub().WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), metadata=metadata_of(request))
            first = await call.read()  # errors (unknown job, bad token) are HTTP errors, before the stream starts
            if first is grpc.aio.EOF:
                return Response(status_code=204)
            return EventStream(job_events(call, first, sse_ping_s, grpc_target))
        job = await stub().GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
        )
        if job.state in TERMINAL:
            # WatchJob after the job's last sequence would wait for an event that never comes: ask for the last one.
            probe = stub().WatchJob(
                jobs_pb2.WatchJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
            )
            try:
                final = await probe.read()
            finally:
                probe.cancel()
            if final is grpc.aio.EOF or final.sequence <= after:
                return Response(status_code=204)
        call = stub().WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=after), metadata=metadata_of(request)
        )
        return EventStream(job_events(call, None, sse_ping_s, grpc_target))

    @app.get(
        "/jobs",
        response_model=models.ListJobsResponse,
        tags=["jobs"],
        openapi_extra=SECURED,
        summary="Jobs, newest first",
        description="Filter by `status` and `type`; page with `page` and `limit`, or follow `nextPageToken` "
        "(passed back as `pageToken`), which stays stable while new jobs arrive.",
        responses=_errors(),
    )
    async def list_jobs(
        request: Request,
        status: Annotated[models.JobStatusName | None, Query(description="Only jobs in this state.")] = None,
        type: Annotated[models.JobTypeName | None, Query(description="Only jobs of this type.")] = None,
        page: Annotated[int | None, Query(ge=1, le=1_000_000, description="1-based page number (default 1).")] = None,
        limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
        page_token: Annotated[str | None, Query(alias="pageToken", max_length=1024)] = None,
    ) -> Response:
        number, token = _list_page(page, page_token)
        response = await stub().ListJobs(
            jobs_pb2.ListJobsRequest(
                state=STATE_ENUMS[status] if status else 0,
                type=TYPE_ENUMS[type] if type else 0,
                page_size=limit,
                page_token=token,
                skip=0 if token else (number - 1) * limit,
            ),
            metadata=metadata_of(request),
            timeout=UNARY_TIMEOUT_S,
        )
        body: dict[str, Any] = {
            "success": True,
            "jobs": [job_json(j) for j in response.jobs],
            "pagination": {
                "page": number,
                "limit": limit,
                "total": response.total_size,
                "totalPages": math.ceil(response.total_size / limit),
            },
        }
        if response.next_page_token:
            body["nextPageToken"] = f"{number + 1}.{response.next_page_token}"
        return FastJSON(body)

    @app.post(
        "/jobs/{jobId}:cancel",
        response_model=models.StatusResponse,
        tags=["jobs"],
        openapi_extra=SECURED,
        summary="Cancel a job",
        description="A running job stops within a second or two and ends `cancelled`; a pending one never starts. "
        "Answers with the job as it is now (it may still say `running` for a moment). Any body is ignored.",
        responses=_errors(404),
    )
    async def cancel_job(request: Request, job_id: JobId) -> Response:
        job = await stub().CancelJob(
            jobs_pb2.CancelJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
        )
        return FastJSON({"success": True, "job": job_json(job)})

    @app.delete(
        "/jobs/{jobId}",
        response_model=models.DeleteResponse,
        tags=["jobs"],
        openapi_extra=SECURED,
        summary="Delete a job and its result",
        description="A running job is cancelled first; 409 JOB_STILL_RUNNING if it has not stopped within 5 s.",
        responses=_errors(404, 409),
    )
    async def delete_job(request: Request, job_id: JobId) -> Response:
        await stub().DeleteJob(
            jobs_pb2.DeleteJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
        )
        return FastJSON({"success": True, "jobId": job_id, "message": f"job {job_id} deleted"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus text format; open like /healthz (counts only, no job data): docs/metrics.md."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz", response_model=models.Health, tags=["meta"], summary="The bridge is up (no auth)")
    async def healthz() -> Response:
        return FastJSON({"success": True})

    @app.get("/", include_in_schema=False)
    async def jobs_page() -> Response:
        """The jobs page (docs/jobs-page.md); its script and style are under /static, the data comes from the API."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def openapi() -> dict[str, Any]:
        """FastAPI's document, less the 422 it adds to every route: this bridge answers bad input with 400."""
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for path in doc["paths"].values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for status, response in responses.items():  # errors are JSON, even on the event stream
                        if int(status) >= 400:
                            response["content"] = {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                            }
            for name in ("HTTPValidationError", "ValidationError"):
                doc.get("components", {}).get("schemas", {}).pop(name, None)
            doc.setdefault("components", {})["securitySchemes"] = {"bearer": BEARER_SCHEME}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise SystemExit(f"{name} must be between 0 and 3600 seconds, got {raw!r}")
    return value


def _bool_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "off", "no"):
        return False
    if raw in ("1", "true", "on", "yes"):
        return True
    raise SystemExit(f"{name} must be on or off, got {raw!r}")


def run(grpc_target: str, http_addr: str, *, log_format: str = "auto", log_level: str = "info") -> None:
    """Serves the bridge; CHAINSYNC_CORS_ORIGINS (comma-separated), CHAINSYNC_SSE_PING_SECONDS,
    CHAINSYNC_TLS_CA (a PEM file: call the gRPC server over TLS, trusting it) and CHAINSYNC_ACCESS_LOG
    (one log line per request; off by default) configure it."""
    import uvicorn

    logs.setup(log_format, log_level)
    access_log = _bool_env("CHAINSYNC_ACCESS_LOG")
    origins = tuple(o.strip() for o in os.environ.get("CHAINSYNC_CORS_ORIGINS", "").split(",") if o.strip())
    ping_s = _float_env("CHAINSYNC_SSE_PING_SECONDS", DEFAULT_PING_S)
    host, port = http_addr.rsplit(":", 1)
    ca_path = os.environ.get("CHAINSYNC_TLS_CA")
    tls_ca = open(ca_path, "rb").read() if ca_path else None
    scheme = "grpcs" if tls_ca else "grpc"
    print(f"chainsync REST bridge on http://{host}:{port} -> {scheme}://{grpc_target}", flush=True)
    app = create_app(grpc_target, cors_origins=origins, sse_ping_s=ping_s, tls_ca=tls_ca, access_log=access_log)
    # log_config=None: uvicorn's own loggers go through the handler logs.setup installed (JSON or text);
    # its access log is off, RequestIds writes a richer one (request id, route, duration) when asked.
    uvicorn.run(app, host=host, port=int(port), log_config=None, log_level=None, access_log=False)


__all__ = ["create_app", "run"]
