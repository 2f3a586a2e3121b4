"""The runner: a bounded thread pool that claims pending jobs and runs them.

Owns: claiming (``JobStore.claim_next``) only when a worker is free, so jobs
beyond the pool wait as ``pending`` in order; waking up at once when a job is
started here (``wake``), and polling otherwise; and ``JobContext``, which each
running job uses to report progress (throttled) and to learn that it must
stop (cancel, timeout, shutdown).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from server.store import JobRecord, JobStore

log = logging.getLogger("chainsync.runner")

PROGRESS_MIN_INTERVAL_S = 0.25  # at most four progress writes a second per job


@dataclass
class JobContext:
    job: JobRecord
    store: JobStore
    deadline: float  # time.monotonic() after which the job has timed out
    shutdown: threading.Event
    _last_write: float = field(default=0.0)

    def timed_out(self) -> bool:
        return time.monotonic() > self.deadline

    def should_stop(self) -> bool:
        return self.shutdown.is_set() or self.timed_out()

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
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_write = now
        self.store.update_progress(
            self.job.id, progress=progress, message=message, stats=stats, from_block=from_block, to_block=to_block
        )


Execute = Callable[[JobContext], None]


class Runner:
    def __init__(self, store: JobStore, execute: Execute, workers: int, poll_interval_s: float = 0.5) -> None:
        self.store = store
        self.execute = execute
        self.workers = workers
        self.poll_interval_s = poll_interval_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chainsync-job")
        self._free = threading.Semaphore(workers)
        self._wake = threading.Event()
        self._shutdown = threading.Event()
        self._loop = threading.Thread(target=self._claim_loop, name="chainsync-claim", daemon=True)
        self._running: set[str] = set()  # ids of jobs in a worker now

    def start(self) -> None:
        self._loop.start()

    def wake(self) -> None:
        """A job was just created: claim without waiting for the next poll."""
        self._wake.set()

    def stop(self, grace_s: float = 10.0) -> bool:
        """Stops claiming and waits up to grace_s for running jobs; True if they all ended."""
        self._shutdown.set()
        self._wake.set()
        deadline = time.monotonic() + grace_s
        self._loop.join(timeout=grace_s)
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
                job = self.store.claim_next()
            except Exception:
                log.exception("claiming a job failed")
            if job is None:
                self._free.release()
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()
                continue
            self._pool.submit(self._run, job)

    def _run(self, job: JobRecord) -> None:
        self._running.add(job.id)
        try:
            ctx = JobContext(job, self.store, time.monotonic() + job.timeout_s, self._shutdown)
            self.execute(ctx)
        except Exception:
            log.exception("job %s crashed", job.id)
        finally:
            self._running.discard(job.id)
            self._free.release()
