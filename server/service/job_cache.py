"""The latest version of each live and recently finished job, in memory: GetJob answers from it.

Every client polls its job's status every 2 seconds: that is the product's
hottest path, so GetJob answers from here without a thread hop or a store
read, with the message built once per version. The cache is fed:

- by this server's own writes: the store tells it each change after the
  commit (server/jobs/store/job_store.py ``subscribe``), so what this server
  wrote, it answers at once;
- with PostgreSQL, by the other replicas' writes: each change is announced
  with NOTIFY and heard here (``follow``); a job the announcement says is
  newer than the cached version is read again. When the LISTEN connection
  (re)connects, and every ``RECONCILE_S`` regardless, the versions of the
  jobs held are compared with the store's and the stale ones read again.

So a replica never answers with a version older than another replica's
write by more than ``RECONCILE_S`` (1 s; typically a few milliseconds, the
NOTIFY's delivery). A job not held (an old one, or one this server never saw)
is read from the store and then held while it is live or recently finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chainsync.v1 import jobs_pb2

from server.jobs.store import Change, JobRecord, JobStore
from server.service.messages import job_message

log = logging.getLogger("chainsync.cache")

RECONCILE_S = 1.0  # the stated bound on how stale another replica's write may be here
KEEP_FINISHED_S = 600.0  # a finished job is held this long after it ended (at most half the retention)
MAX_JOBS = 20_000  # held at once; the oldest finished go first


@dataclass
class Held:
    job: JobRecord
    _message: jobs_pb2.Job | None = field(default=None, repr=False)

    @property
    def message(self) -> jobs_pb2.Job:
        """The Job message of this version, built once (by the first GetJob that asks)."""
        if self._message is None:
            self._message = job_message(self.job)
        return self._message


class JobCache:
    def __init__(self, store: JobStore, retention_s: float) -> None:
        self.store = store
        self.keep_finished_s = min(KEEP_FINISHED_S, retention_s / 2)
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []
        store.subscribe(self._changed)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Calls listener(job_id) (from the writing thread) after each new version held or job dropped."""
        self._listeners.append(listener)

    def _tell(self, job_id: str) -> None:
        for listener in self._listeners:
            listener(job_id)

    def get(self, job_id: str) -> Held | None:
        """The job as last written, when held (a dict lookup: safe on the event loop)."""
        held = self._held.get(job_id)
        if held is not None and held.job.finished and self._expired(held.job):
            return None
        return held

    def load(self, job_id: str) -> Held | None:
        """The job from the store (blocking: run it in a thread), held from now on when it is live or recent."""
        job = self.store.get(job_id)
        return self._put(job) if job is not None else None

    def seen(self, job: JobRecord) -> None:
        """A version read from the store elsewhere (a watcher's event): held unless a newer one is. A watcher's
        poll can read a commit before the writing thread has told the cache; GetJob must not answer older."""
        self._put(job)

    def _expired(self, job: JobRecord) -> bool:
        return job.ended_at is not None and time.time() - job.ended_at > self.keep_finished_s

    def _put(self, job: JobRecord) -> Held:
        """Holds this version unless a newer one is held (writes from several threads may arrive out of order)."""
        held = Held(job)
        if job.finished and self._expired(job):
            return held  # answered, not held
        with self._lock:
            current = self._held.get(job.id)
            if current is not None and current.job.version >= job.version:
                return current
            self._held[job.id] = held
            if len(self._held) > MAX_JOBS:
                self._evict()
        self._tell(job.id)
        return held

    def _evict(self) -> None:
        """Drops the expired finished jobs, then the oldest finished ones, down to MAX_JOBS (lock held)."""
        finished = sorted((h.job.ended_at or 0, job_id) for job_id, h in self._held.items() if h.job.finished)
        for _, job_id in finished[: len(self._held) - MAX_JOBS + MAX_JOBS // 10]:
            del self._held[job_id]

    def _drop(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)
        self._tell(job_id)

    def _changed(self, change: Change) -> None:
        if change.job is None:
            self._drop(change.job_id)
        else:
            self._put(change.job)

    # -- the other replicas' writes (PostgreSQL) ---------------------------------

    def follow(self, stop: threading.Event) -> None:
        """Blocks until stop is set: hears the replicas' announcements and reconciles every RECONCILE_S.
        Returns at once on a store only one server uses."""
        if not self.store.shared:
            return
        reconciler = threading.Thread(target=self._reconcile_every, args=(stop,), name="chainsync-cache", daemon=True)
        reconciler.start()
        try:
            self.store.follow_changes(self._announced, stop)
        finally:
            stop.set()
            reconciler.join(RECONCILE_S * 2)

    def _announced(self, payload: str | None) -> None:
        if payload is None:
            self.reconcile()
            return
        job_id, _, version = payload.rpartition(":")
        held = self._held.get(job_id)
        if version == "-1":
            self._drop(job_id)
        elif held is not None and held.job.version < int(version):
            self._reread(job_id)

    def _reconcile_every(self, stop: threading.Event) -> None:
        for _ in range(10**9):  # until stop; bounded all the same
            if stop.wait(RECONCILE_S):
                return
            self.reconcile()

    def reconcile(self) -> None:
        """Reads again every held job whose version in the store is newer (or which is gone)."""
        try:
            held = {job_id: h.job.version for job_id, h in list(self._held.items())}
            if not held:
                return
            versions = self.store.versions(list(held))
            for job_id, version in held.items():
                if versions.get(job_id, -1) != version:
                    self._reread(job_id)
        except Exception:  # a store outage must not stop the thread: the next round tries again
            log.warning("job cache: reconciling with the store failed", exc_info=True)

    def _reread(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None:
            self._drop(job_id)
        else:
            self._put(job)
