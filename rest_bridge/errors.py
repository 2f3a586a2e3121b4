"""gRPC status -> HTTP response, as google/rpc/code.proto maps them (design.md).

Every error body is ``{"success": false, "error", "code", "details"}`` where
``code`` is the ErrorInfo reason from the gRPC status details (or, without
one, the canonical code's name) and ``details`` its metadata.
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2, status_pb2

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
NOT_COMPLETED_REASONS = {"JOB_NOT_COMPLETED"}  # FAILED_PRECONDITION that means "not yet": 409


class FastJSON(JSONResponse):
    """JSONResponse rendered by orjson (several times faster on the polling path)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


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


def rpc_error_parts(err: grpc.aio.AioRpcError, target: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) for a failed gRPC call."""
    reason, metadata = error_info(err)
    code = err.code()
    if reason is None and code == grpc.StatusCode.UNAVAILABLE:
        return 503, error_body(
            f"the chainsync gRPC server at {target} is unreachable; is `chainsync serve` running?", "GRPC_UNAVAILABLE"
        )
    if reason is None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return 504, error_body(f"the chainsync gRPC server at {target} did not answer in time", "GRPC_TIMEOUT")
    status = HTTP_STATUS.get(code, 500)
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason in NOT_COMPLETED_REASONS:
        status = 409
    return status, error_body(err.details() or code.name, reason or code.name, metadata)


def from_rpc_error(err: grpc.aio.AioRpcError, target: str) -> JSONResponse:
    status, body = rpc_error_parts(err, target)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="chainsync"'
    elif status in (429, 503):
        headers["Retry-After"] = "1"
    return FastJSON(body, status_code=status, headers=headers)
