"""The bridge's errors: the error body, failed gRPC calls as HTTP answers, and the app's exception handlers.

Every error body is ``{"success": false, "error", "code", "details"}`` where
``code`` is the ErrorInfo reason from the gRPC status details (or, without
one, the canonical code's name) and ``details`` its metadata. The HTTP status
of a reason, the server's and the bridge's own alike (GRPC_UNAVAILABLE,
BODY_TOO_LARGE, ...), comes from server/errors.py's ``CATALOGUE``; a reason it
does not know gets its gRPC code's status, as google/rpc/code.proto maps them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2, status_pb2
from starlette.exceptions import HTTPException as StarletteHTTPException

from rest_bridge.convert import FastJSON
from server import logs
from server.errors import CATALOGUE, http_status

if TYPE_CHECKING:
    from rest_bridge.metrics import BridgeMetrics

log = logging.getLogger("chainsync.bridge")

# The router's own answers (no route, or not this method), by the status Starlette gives them.
ROUTING_REASONS = {CATALOGUE[reason].http: reason for reason in ("NOT_FOUND", "METHOD_NOT_ALLOWED")}


class BadRequest(Exception):
    """Input the bridge refuses itself (a header, a page token), naming ``field``: INVALID_ARGUMENT (400) unless
    another reason of the catalogue says better (INVALID_TOKEN for an Authorization gRPC cannot carry: 401)."""

    def __init__(self, field: str, message: str, reason: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


def error_info(err: grpc.RpcError) -> tuple[str | None, dict[str, str]]:
    """The ErrorInfo reason and metadata carried in the status details, if any."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata)
    return None, {}


def error_body(message: str, code: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"success": False, "error": message, "code": code, "details": details or {}}


def error_response(
    status: int, message: str, code: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return FastJSON(error_body(message, code, details), status_code=status, headers=headers)


def bridge_error(
    reason: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error the bridge answers itself, with its reason's HTTP status from the catalogue."""
    return error_response(CATALOGUE[reason].http, message, reason, details, headers)


def rpc_error_parts(err: grpc.aio.AioRpcError, target: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) for a failed gRPC call."""
    reason, metadata = error_info(err)
    code = err.code()
    if reason is None and code == grpc.StatusCode.UNAVAILABLE:
        message = f"the chainsync gRPC server at {target} is unreachable; is `chainsync serve` running?"
        return CATALOGUE["GRPC_UNAVAILABLE"].http, error_body(message, "GRPC_UNAVAILABLE")
    if reason is None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the chainsync gRPC server at {target} did not answer in time"
        return CATALOGUE["GRPC_TIMEOUT"].http, error_body(message, "GRPC_TIMEOUT")
    return http_status(reason, code.name), error_body(err.details() or code.name, reason or code.name, metadata)


def from_rpc_error(err: grpc.aio.AioRpcError, target: str) -> JSONResponse:
    status, body = rpc_error_parts(err, target)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="chainsync"'
    elif status in (429, 503):
        headers["Retry-After"] = "1"
    return FastJSON(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(field, message) for the first problem FastAPI found in a request."""
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


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    field, message = validation_message(exc)
    return bridge_error("INVALID_ARGUMENT", message, {"field": field})


async def on_bad_request(request: Request, exc: BadRequest) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="chainsync"'} if CATALOGUE[exc.reason].http == 401 else None
    return bridge_error(exc.reason, str(exc), {"field": exc.field}, headers)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8, nested too deep, ...)
        return bridge_error("INVALID_ARGUMENT", "body: not a JSON object this API can read", {"field": "body"})
    reason = ROUTING_REASONS.get(exc.status_code)
    message = f"no route {request.method} {request.url.path}" if reason else str(exc.detail)
    return error_response(exc.status_code, message, reason or "HTTP_ERROR", headers=getattr(exc, "headers", None))


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    # This handler runs outside the middleware that adds X-Request-ID to the other answers.
    return bridge_error(
        "INTERNAL",
        f"internal error in the REST bridge ({type(exc).__name__})",
        headers={"X-Request-ID": logs.current_request_id() or ""},
    )


def install_handlers(app: FastAPI, metrics: BridgeMetrics, grpc_target: str) -> None:
    """Bad input is a 400 naming the field, a failed gRPC call its HTTP error (counted in ``metrics``), a
    route that does not exist a 404 or 405, anything else a 500: all with the error body."""

    async def on_rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        metrics.grpc_error(exc.code().name)
        return from_rpc_error(exc, grpc_target)

    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(BadRequest, on_bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(grpc.aio.AioRpcError, on_rpc_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)
