"""gRPC status -> HTTP response, as google/rpc/code.proto maps them (design.md).

Every error body is ``{"success": false, "error", "code", "details"}`` where
``code`` is the ErrorInfo reason from the gRPC status details.
"""

from __future__ import annotations

from typing import Any

import grpc
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


def error_info(err: grpc.aio.AioRpcError) -> tuple[str | None, dict[str, str]]:
    """The ErrorInfo reason and metadata carried in the status details, if any."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata)
    return None, {}


def error_response(status: int, message: str, code: str, details: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": message, "code": code, "details": details or {}}, status_code=status
    )


def from_rpc_error(err: grpc.aio.AioRpcError, target: str) -> JSONResponse:
    reason, metadata = error_info(err)
    code = err.code()
    if reason is None and code == grpc.StatusCode.UNAVAILABLE:
        return error_response(
            503, f"the chainsync gRPC server at {target} is unreachable; is `chainsync serve` running?",
            "GRPC_UNAVAILABLE",
        )
    status = HTTP_STATUS.get(code, 500)
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason in NOT_COMPLETED_REASONS:
        status = 409
    return error_response(status, err.details() or code.name, reason or code.name, metadata)
