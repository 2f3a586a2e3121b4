"""Typed errors of both clients: one class per thing a caller may want to catch.

Every error has ``code`` (the UPPER_SNAKE_CASE reason the server sent, e.g.
``JOB_NOT_FOUND``), ``message`` (what failed and what to do) and ``details``
(the reason's metadata, e.g. ``field``, ``jobId``, ``state``). A failed job is
the one exception: ``JobFailed.code`` is the job's own error code (``JOB_TIMEOUT``,
``REORG_TOO_DEEP``, ...), whether ``wait`` saw it fail or ``result`` was asked of it.
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

    @property
    def field(self) -> str | None:
        """The request field the server named (``blocksBack``, ``after``, ...), if any."""
        return self.details.get("field")


class InvalidArgument(ChainsyncError):
    """Bad input (HTTP 400 / INVALID_ARGUMENT); ``field`` names the culprit (``after`` for a cursor of
    another type)."""


class Unauthenticated(ChainsyncError):
    """The server needs a bearer token (``token=`` / CHAINSYNC_API_TOKEN) and got none or a wrong one."""


class JobNotFound(ChainsyncError):
    """No job with this id (never existed, deleted, or removed after its retention period)."""


class JobNotCompleted(ChainsyncError):
    """The result was asked for before the job completed; ``state`` says where it is."""

    @property
    def state(self) -> str | None:
        return self.details.get("state")


class CursorNotFound(JobNotFound):
    """``after`` names no job this caller can see (deleted, past its retention): start again from a full sync."""


class CursorNotCompleted(JobNotCompleted):
    """``after`` names a job that has not completed (``state``): name the last one whose result you applied."""


class ServiceUnavailable(ChainsyncError):
    """The gRPC server or the bridge cannot be reached, or the node behind it is down. Retrying later may work."""


class JobFailed(ChainsyncError):
    """The job ended ``failed``: ``wait`` saw it, or ``result`` was asked of it (the server's JOB_FAILED).
    ``code`` is the job's own error code (RPC_UNAVAILABLE, JOB_TIMEOUT, ...); ``job`` the job when ``wait``
    saw it (None from ``result``, whose ``details`` carry jobId, state, errorCode and error)."""

    def __init__(
        self, message: str, code: str = "JOB_FAILED", details: dict[str, Any] | None = None, job: Job | None = None
    ) -> None:
        super().__init__(message, code, details)
        self.job = job

    @classmethod
    def of(cls, job: Job) -> JobFailed:
        """The error for a job ``wait`` saw fail: ReorgTooDeep when that is why."""
        kind = ReorgTooDeep if job.error_code == "REORG_TOO_DEEP" else JobFailed
        details = {"jobId": job.id, "state": job.status, "errorCode": job.error_code or "", "error": job.error or ""}
        return kind(f"job {job.id} failed: {job.error or job.message}", job.error_code or "JOB_FAILED", details, job)


class ReorgTooDeep(JobFailed):
    """An incremental sync failed because the chain changed below the server's reorg window: run a full sync
    (``full=True``), REPLACE your view with its result and continue after it (docs/reorgs.md)."""


class JobCancelled(ChainsyncError):
    """The job ended ``cancelled``: ``wait`` saw it, or ``result`` was asked of it (JOB_CANCELLED); ``job`` the
    job when ``wait`` saw it."""

    def __init__(
        self, message: str, code: str = "JOB_CANCELLED", details: dict[str, Any] | None = None, job: Job | None = None
    ) -> None:
        super().__init__(message, code, details)
        self.job = job

    @classmethod
    def of(cls, job: Job) -> JobCancelled:
        details = {"jobId": job.id, "state": job.status}
        return cls(f"job {job.id} was cancelled", job.error_code or "JOB_CANCELLED", details, job)


class WaitTimeout(ChainsyncError, TimeoutError):
    """``wait`` (or ``watch`` with a timeout) ran out of time; the job goes on."""


_BY_REASON: dict[str, type[ChainsyncError]] = {
    "JOB_NOT_FOUND": JobNotFound,
    "JOB_NOT_COMPLETED": JobNotCompleted,
    "JOB_FAILED": JobFailed,
    "JOB_CANCELLED": JobCancelled,
    "CURSOR_NOT_FOUND": CursorNotFound,
    "CURSOR_NOT_COMPLETED": CursorNotCompleted,
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
    """The typed error for a failed call: by reason first, then by HTTP status or gRPC code.

    The result of a failed job (JOB_FAILED) is a JobFailed whose code is the job's own error code, as
    ``wait`` raises it: ReorgTooDeep for REORG_TOO_DEEP."""
    cls = _BY_REASON.get(reason or "") or _BY_STATUS.get(status or "", ChainsyncError)
    code = reason or str(status or "UNKNOWN")
    if reason == "JOB_FAILED" and details and details.get("errorCode"):
        code = details["errorCode"]
        cls = ReorgTooDeep if code == "REORG_TOO_DEEP" else JobFailed
    return cls(message, code, details)
