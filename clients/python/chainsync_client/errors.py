"""Typed errors of both clients: one class per thing a caller may want to catch.

Every error has ``code`` (the UPPER_SNAKE_CASE reason the server sent, e.g.
``JOB_NOT_FOUND``), ``message`` (what failed and what to do) and ``details``
(the reason's metadata, e.g. ``field``, ``jobId``, ``state``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainsync_client.models import Job


class ChainsyncError(Exception):
    """Base of every error the clients raise."""

    def __init__(self, message: str, code: str = "UNKNOWN", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidArgument(ChainsyncError):
    """Bad input (HTTP 400 / INVALID_ARGUMENT); ``field`` names the culprit."""

    @property
    def field(self) -> str | None:
        return self.details.get("field")


class Unauthenticated(ChainsyncError):
    """The server needs a bearer token (``token=`` / CHAINSYNC_API_TOKEN) and got none or a wrong one."""


class JobNotFound(ChainsyncError):
    """No job with this id (never existed, deleted, or removed after its retention period)."""


class JobNotCompleted(ChainsyncError):
    """The result was asked for before the job completed; ``state`` says where it is."""

    @property
    def state(self) -> str | None:
        return self.details.get("state")


class ServiceUnavailable(ChainsyncError):
    """The gRPC server or the bridge cannot be reached, or the node behind it is down. Retrying later may work."""


class JobFailed(ChainsyncError):
    """``wait`` saw the job end ``failed``; ``code`` is its error code (RPC_UNAVAILABLE, JOB_TIMEOUT, ...)."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"job {job.id} failed: {job.error or job.message}", job.error_code or "JOB_FAILED", {"jobId": job.id}
        )
        self.job = job


class JobCancelled(ChainsyncError):
    """``wait`` saw the job end ``cancelled``."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} was cancelled", job.error_code or "JOB_CANCELLED", {"jobId": job.id})
        self.job = job


class WaitTimeout(ChainsyncError, TimeoutError):
    """``wait`` (or ``watch`` with a timeout) ran out of time; the job goes on."""


_BY_REASON: dict[str, type[ChainsyncError]] = {
    "JOB_NOT_FOUND": JobNotFound,
    "JOB_NOT_COMPLETED": JobNotCompleted,
    "MISSING_TOKEN": Unauthenticated,
    "INVALID_TOKEN": Unauthenticated,
    "GRPC_UNAVAILABLE": ServiceUnavailable,
    "RPC_UNAVAILABLE": ServiceUnavailable,
    "NOT_FOUND": ChainsyncError,  # the bridge has no such route: a wrong base URL, not a missing job
}
# Transport status (HTTP status or gRPC code name) -> class, when the reason says nothing more specific.
_BY_STATUS: dict[int | str, type[ChainsyncError]] = {
    400: InvalidArgument,
    "INVALID_ARGUMENT": InvalidArgument,
    401: Unauthenticated,
    "UNAUTHENTICATED": Unauthenticated,
    404: JobNotFound,
    "NOT_FOUND": JobNotFound,
    503: ServiceUnavailable,
    "UNAVAILABLE": ServiceUnavailable,
}


def error_for(
    message: str, reason: str | None, details: dict[str, Any] | None, status: int | str | None
) -> ChainsyncError:
    """The typed error for a failed call: by reason first, then by HTTP status or gRPC code."""
    cls = _BY_REASON.get(reason or "") or _BY_STATUS.get(status or "", ChainsyncError)
    return cls(message, reason or str(status or "UNKNOWN"), details)
