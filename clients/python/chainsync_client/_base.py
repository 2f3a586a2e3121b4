"""What GrpcClient and RestClient share: the API they both offer, and ``wait`` built on ``watch``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chainsync_client.errors import InvalidArgument, JobCancelled, JobFailed, WaitTimeout
from chainsync_client.models import Cursor, Job, JobEvent, JobPage, SyncResult

DEFAULT_WAIT_S = 600.0  # the spec's client polling timeout: 10 minutes
MAX_RECONNECTS = 5  # consecutive failed reconnects of a watch before giving up
JOB_TYPES = ("blockchain_sync", "proposals_sync", "petitions_sync", "reports_sync")
JOB_STATES = ("pending", "running", "completed", "failed", "cancelled")


def backoff(attempt: int) -> float:
    return min(2.0, 0.2 * 2**attempt)


def cursor_id(after: str | Cursor | None) -> str | None:
    """The job id of ``after``: a job id as it is, or a result's (or a view's) cursor; None for none."""
    return (after.job_id if isinstance(after, Cursor) else after) or None


def check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise InvalidArgument(
            f"{name}: must be one of {', '.join(choices)}, got {value!r}", "INVALID_ARGUMENT", {"field": name}
        )


class Client:
    """The API of both clients. Use ``GrpcClient`` or ``RestClient``; both are context managers."""

    def start_sync(
        self,
        blocks_back: int | None = None,
        *,
        full: bool = False,
        type: str = "blockchain_sync",
        request_id: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        incremental: bool = False,
        confirmations: int | None = None,
        timeout_seconds: int | None = None,
        after: str | Cursor | None = None,
    ) -> Job:
        """Starts a sync job and returns it at once (``.id``, ``.status`` pending). The same ``request_id``
        within 24 h returns the first job instead of starting another. ``after`` (a job id, or a result's
        ``cursor``) continues from the job whose result you applied last, and implies ``incremental``."""
        raise NotImplementedError

    def status(self, job_id: str) -> Job:
        raise NotImplementedError

    def result(self, job_id: str, *, page_size: int | None = None, page_token: str | None = None) -> SyncResult:
        """The records of a completed job (JobNotCompleted before). With page_size, at most that many of
        each kind; ``next_page_token`` continues."""
        raise NotImplementedError

    def iter_records(self, job_id: str, page_size: int = 500) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, record) for every record of a completed job, a page at a time (never all in memory)."""
        raise NotImplementedError

    def watch(self, job_id: str, *, after_sequence: int = 0, timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's current state, then every change, until it ends. Reconnects by itself after a dropped
        connection, resuming after the last event (nothing is missed). WaitTimeout after ``timeout`` s."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> Job:
        raise NotImplementedError

    def delete(self, job_id: str) -> None:
        raise NotImplementedError

    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 20,
        page: int | None = None,
        page_token: str | None = None,
    ) -> JobPage:
        """Jobs, newest first. Page by number (``page``, 1-based) or by ``page_token``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def wait(self, job_id: str, timeout: float = DEFAULT_WAIT_S) -> Job:
        """Follows the job until it ends; returns it when completed, raises JobFailed (with the job's
        error ``code``; ReorgTooDeep for REORG_TOO_DEEP) or JobCancelled otherwise, and WaitTimeout after
        ``timeout`` seconds."""
        job = None
        for event in self.watch(job_id, timeout=timeout):
            job = event.job
        if job is None or not job.done:
            job = self.status(job_id)
        if job.status == "completed":
            return job
        if job.status == "failed":
            raise JobFailed.of(job)
        if job.status == "cancelled":
            raise JobCancelled.of(job)
        raise WaitTimeout(f"job {job_id} is still {job.status}", "WAIT_TIMEOUT", {"jobId": job_id})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
