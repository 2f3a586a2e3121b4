"""The runner: a bounded thread pool that claims jobs and runs them.

Owns: claiming (``JobStore.claim_next``) only when a worker is free, so jobs
beyond the pool wait as ``pending`` in order; waking at once when a job is
started here (``wake``) and polling otherwise; a heartbeat thread that renews
the lease of every job this process runs and notices cancel requests; and
``JobContext``, through which a running job reports progress (throttled) and
carries its stop token (server/stopping.py): cancelled, timed out, the server
shutting down, or the lease lost.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from server import logs
from server.jobs.store import JobRecord, JobStore
from server.stopping import CANCELLED, LOST, Stopped, StopToken

log = logging.getLogger("chainsync.runner")

PROGRESS_MIN_INTERVAL_S = 0.25  # at most four progress writes a second per job


@dataclass
class JobContext:
    job: JobRecord
    store: JobStore
    owner: str
    stop: StopToken  # the runner stops it: cancel requested (heartbeat), deadline, shutdown, lease lost
    _last_write: float = 0.0

    @property
    def deadline(self) -> float:
        """Wall-clock end of the job's time: its first start plus its timeout, across resumes."""
        return (self.job.started_at or time.time()) + self.job.timeout_s

    def report(
        self,
        progress: int,
        message: str,
        stats: dict[str, Any],
        *,
        force: bool = False,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> None:
        """Writes the job's progress (at most every PROGRESS_MIN_INTERVAL_S unless forced); Stopped when it must stop."""
        self.stop.raise_if_stopped()
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_write = now
        written = self.store.update_progress(
            self.job.id,
            progress=progress,
            message=message,
            stats=stats,
            from_block=from_block,
            to_block=to_block,
            owner=self.owner,
        )
        if not written:
            raise Stopped(LOST)  # another worker holds the job now (our lease expired)


Execute = Callable[[JobContext], None]


class Runner:
    def __init__(
        self, store: JobStore, execute: Execute, workers: int, *, lease_s: float = 15.0, poll_interval_s: float = 0.5
    ) -> None:
        self.store = store
        self.execute = execute
        self.workers = workers
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.owner = f"runner-{uuid.uuid4()}"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chainsync-job")
        self._free = threading.Semaphore(workers)
        self._wake = threading.Event()
        self._shutdown = threading.Event()
        self._running: dict[str, JobContext] = {}
        self._threads = [
            threading.Thread(target=self._claim_loop, name="chainsync-claim", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="chainsync-heartbeat", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop_here(self, job_id: str) -> None:
        """A cancel was just recorded: if this process runs the job, it stops now rather than at the next
        heartbeat (another replica's job stops at its own heartbeat)."""
        ctx = self._running.get(job_id)
        if ctx is not None:
            ctx.stop.stop(CANCELLED)

    def wake(self) -> None:
        """A job was just created or cancelled: act without waiting for the next poll."""
        self._wake.set()

    def running_job_ids(self) -> list[str]:
        return list(self._running)

    def stop(self, grace_s: float = 10.0) -> bool:
        """Stops claiming; running jobs save their checkpoint and go back to pending.

        Waits up to grace_s; True when every job let go in time.
        """
        self._shutdown.set()
        self._wake.set()
        deadline = time.monotonic() + grace_s
        self._threads[0].join(timeout=grace_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._running

    def _claim_loop(self) -> None:
        while not self._shutdown.is_set():
            if not self._free.acquire(timeout=self.poll_interval_s):
                continue
            job = None
            try:
                job = self.store.claim_next(self.owner, self.lease_s)
            except Exception:
                log.exception("claiming a job failed")
            if job is None:
                self._free.release()
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()
                continue
            deadline = (job.started_at or time.time()) + job.timeout_s
            ctx = JobContext(job, self.store, self.owner, StopToken(deadline=deadline, shutdown=self._shutdown))
            self._running[job.id] = ctx
            self._pool.submit(self._run, ctx)

    def _heartbeat_loop(self) -> None:
        interval = min(1.0, self.lease_s / 5)
        while not self._shutdown.wait(interval):
            for job_id, ctx in list(self._running.items()):
                try:
                    if not self.store.heartbeat(job_id, self.owner, self.lease_s):
                        ctx.stop.stop(CANCELLED)  # cancel requested, or the job is no longer ours (the job tells)
                except Exception:
                    log.exception("heartbeat failed", extra={"job_id": job_id})

    def _run(self, ctx: JobContext) -> None:
        job = ctx.job
        # contextvars do not follow a task into a pool thread: every line logged while this job runs
        # (engine, RPC transport, store) gets its job id and request id from here.
        context = logs.bind(job_id=job.id, request_id=logs.job_request_id(job.request))
        try:
            if job.attempts > 1:
                log.info("job resumed", extra={"type": job.type, "attempt": job.attempts})
            else:
                log.info("job claimed", extra={"type": job.type, "waited_s": round(time.time() - job.created_at, 3)})
            self.execute(ctx)
        except Exception:
            log.exception("job crashed")
        finally:
            self._running.pop(job.id, None)
            self._free.release()
            logs.unbind(context)
