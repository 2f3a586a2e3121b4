"""The job store: where jobs, their progress, checkpoints and results live.

``JobStore`` holds the store's logic in dialect-free Python that runs named
queries (sql/) through a connector (connector.py: SQLite or PostgreSQL), in
the manner of procrastinate's job manager. Every write is one transaction, so
a crash at any point leaves the store consistent:

- a job moves ``pending -> running -> completed | failed | cancelled`` and a
  terminal state never changes again;
- every change bumps the job's ``version`` and appends a snapshot to
  ``job_events`` in the same transaction: the WatchJob stream replays from it;
- a running job holds a lease (``owner``, ``lease_expires``) renewed by its
  heartbeat; a job whose lease expired (its process died) is claimed again and
  resumes from its checkpoint;
- the sync writes the entities it found and the records it read chunk by chunk
  (``touched``, ``records``), with its checkpoint, in one transaction each;
- a worker that lost its lease writes nothing: every write that names an
  owner is fenced to the lease holder.

A unit of work may be run again from the start on PostgreSQL (a lost
connection), so each is safe to repeat: upserts, updates guarded by the state
they expect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import orjson

from server.jobs.store.connector import Connector, Row, Transaction
from server.jobs.store.models import JobPage, JobPosition, JobRecord, ResultSummary
from server.states import COMPLETED, PENDING, RUNNING, TERMINAL

T = TypeVar("T")
JOB_FIELDS = tuple(JobRecord.__dataclass_fields__)  # the jobs columns a job query selects
_JSON_FIELDS = ("request", "stats", "checkpoint")  # stored as JSON text
RECORDS_PAGE = 1000  # records() reads this many rows per query


def _distinct(touched: list[tuple]) -> list[tuple]:
    """One row per (kind, id, block): the events of the rows that name it added up, with the provenance when
    any has it (one INSERT cannot name a row twice on PostgreSQL)."""
    rows: dict[tuple, tuple] = {}
    for row in touched:
        key = row[:3]
        same = rows.get(key)
        rows[key] = row if same is None else (*key, same[3] + row[3], row[4] or same[4])
    return list(rows.values())


def job_from_row(row: Row) -> JobRecord:
    """A JobRecord from a row of a job query (get_job, list_jobs, ...)."""
    values = {name: row[name] for name in JOB_FIELDS}
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


@dataclass(frozen=True)
class Change:
    """A job this store wrote: its new version (``job``), or its removal (``job`` None)."""

    job_id: str
    job: JobRecord | None


class JobStore:
    """What the servicer and the runner need from a store, on any connector.

    Every job it changes is told, once committed, to the listeners ``subscribe`` added (the servicer's
    in-memory job cache), and announced to the other servers of the store (with PostgreSQL: NOTIFY, which
    ``follow_changes`` hears)."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._listeners: list[Callable[[Change], None]] = []
        self._local = threading.local()  # the changes of the unit of work this thread runs

    @property
    def shared(self) -> bool:
        """Whether other servers may write to this store (PostgreSQL) or only this one (SQLite)."""
        return self.connector.dialect != "sqlite"

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """listener(change) after each commit that changed a job (in the writing thread: keep it quick)."""
        self._listeners.append(listener)

    def follow_changes(self, on_announce: Callable[[str | None], None], stop: threading.Event) -> None:
        """Blocks, calling on_announce("<job id>:<version>") for every change any server of the store commits
        (version -1: removed), and on_announce(None) when it (re)connects and may have missed some; returns
        when stop is set. Only a store that servers share announces (PostgreSQL); elsewhere it returns at once."""
        self.connector.listen(on_announce, stop)

    def _write(self, work: Callable[[Transaction], T]) -> T:
        """connector.write, then the jobs it changed told to the listeners (once, after the commit: a unit of
        work run again after a lost connection starts its list again)."""
        changes: list[Change] = []

        def attempt(tx: Transaction) -> T:
            changes.clear()
            self._local.changes = changes
            try:
                return work(tx)
            finally:
                self._local.changes = None

        result = self.connector.write(attempt)
        for change in changes:
            for listener in self._listeners:
                listener(change)
        return result

    def _announce(self, tx: Transaction, job_id: str, job: JobRecord | None) -> None:
        changes = getattr(self._local, "changes", None)
        if changes is not None:
            changes.append(Change(job_id, job))
        self.connector.announce(tx, f"{job_id}:{job.version if job else -1}")

    def close(self) -> None:
        self.connector.close()

    # -- inside a unit of work -------------------------------------------------

    def _load(self, tx: Transaction, job_id: str) -> JobRecord | None:
        row = tx.one("get_job", job_id=job_id)
        return job_from_row(row) if row else None

    def _changed(self, tx: Transaction, job_id: str) -> JobRecord:
        """After an update that bumped the version: appends the event and returns the job."""
        job = self._load(tx, job_id)
        assert job is not None
        tx.run(
            "append_event", job_id=job.id, sequence=job.version, time=time.time(), snapshot=json.dumps(job.snapshot())
        )
        self._announce(tx, job.id, job)
        return job

    def _holds(self, tx: Transaction, job_id: str, owner: str | None) -> bool:
        """Inside a write transaction: may owner write this job's work? (Always, without an owner.)"""
        if owner is None:
            return True
        row = tx.one("job_holder_for_update", job_id=job_id)
        return row is not None and row["state"] == RUNNING and row["owner"] == owner

    # -- jobs ------------------------------------------------------------------

    def create(self, job: JobRecord) -> JobRecord:
        """Stores a new pending job, or returns the job already stored under its request_id."""

        def insert(tx: Transaction) -> JobRecord:
            if job.request_id:
                # The key is per principal: two tokens' requestIds never meet.
                key = f"{job.principal}\x1f{job.request_id}" if job.principal else job.request_id
                self.connector.lock(tx, f"chainsync.request_id:{key}")  # one job per key, across replicas
                row = tx.one("job_of_request_id", request_id=key)
                existing = row and self._load(tx, row["job_id"])
                if existing:
                    return existing
                tx.run("remember_request_id", request_id=key, job_id=job.id, created_at=job.created_at)
            tx.run(
                "insert_job",
                id=job.id,
                type=job.type,
                state=job.state,
                progress=job.progress,
                message=job.message,
                request=json.dumps(job.request),
                request_id=job.request_id,
                timeout_s=job.timeout_s,
                created_at=job.created_at,
                principal=job.principal,
            )
            return self._changed(tx, job.id)

        return self._write(insert)

    def get(self, job_id: str) -> JobRecord | None:
        return self.connector.read(lambda tx: self._load(tx, job_id))

    def claim_next(self, owner: str, lease_s: float) -> JobRecord | None:
        """Takes the oldest pending job, or a running one whose lease expired, for owner."""
        started = time.time()  # this process's clock, like the timeout it is compared with

        def claim(tx: Transaction) -> JobRecord | None:
            now = self.connector.now(tx)
            row = tx.one("claimable_job", now=now)
            if row is None:
                return None
            tx.run("take_job", job_id=row["id"], started_at=started, owner=owner, lease_expires=now + lease_s)
            return self._changed(tx, row["id"])

        return self._write(claim)

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Renews the lease; False when the job is no longer this owner's to run (or cancel was asked)."""

        def renew(tx: Transaction) -> int:
            return tx.run("renew_lease", job_id=job_id, owner=owner, lease_expires=self.connector.now(tx) + lease_s)

        return bool(self._write(renew))

    def update_progress(
        self,
        job_id: str,
        *,
        progress: int,
        message: str,
        stats: dict[str, Any],
        from_block: int | None = None,
        to_block: int | None = None,
        owner: str | None = None,
    ) -> bool:
        """Progress never goes down; only a running job (held by owner, when given) is touched.

        False when nothing was written: the job is not running, or no longer owner's."""

        def update(tx: Transaction) -> bool:
            changed = tx.run(
                "update_progress",
                job_id=job_id,
                progress=progress,
                message=message,
                stats=json.dumps(stats),
                from_block=from_block,
                to_block=to_block,
                owner=owner,
            )
            if changed:
                self._changed(tx, job_id)
            return bool(changed)

        return self._write(update)

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A pending job ends cancelled at once; a running one is flagged and its worker stops."""

        def cancel(tx: Transaction) -> JobRecord | None:
            # job_for_update locks the row: a claim in flight has either committed (we see running) or skips it.
            row = tx.one("job_for_update", job_id=job_id)
            job = job_from_row(row) if row else None
            if job is None or job.finished:
                return job
            if job.state == PENDING:
                tx.run("cancel_pending_job", job_id=job_id, ended_at=time.time())
            else:
                tx.run("flag_cancel", job_id=job_id)
            return self._changed(tx, job_id)

        return self._write(cancel)

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        message: str,
        error_code: str | None = None,
        error_message: str | None = None,
        summary: ResultSummary | None = None,
        stats: dict[str, Any] | None = None,
        owner: str | None = None,
    ) -> bool:
        """Moves an unfinished job to a terminal state (with its last stats); False if it already was
        in one, or (with owner) if the job is no longer that owner's."""
        assert state in TERMINAL, state

        def end(tx: Transaction) -> bool:
            changed = tx.run(
                "finish_job",
                job_id=job_id,
                state=state,
                message=message,
                error_code=error_code,
                error_message=error_message,
                ended_at=time.time(),
                stats=json.dumps(stats) if stats is not None else None,
                owner=owner,
            )
            if not changed:
                return False
            if summary is not None:
                tx.run("save_result", job_id=job_id, summary=json.dumps(asdict(summary)))
            if state == COMPLETED and summary is not None and summary.window_from is not None:
                self._keep_window(tx, job_id, summary)
            else:
                tx.run("forget_touched", job_id=job_id)
                tx.run("forget_window", job_id=job_id)
            if state != COMPLETED:
                tx.run("forget_records", job_id=job_id)
            self._changed(tx, job_id)
            return True

        return self._write(end)

    @staticmethod
    def _keep_window(tx: Transaction, job_id: str, summary: ResultSummary) -> None:
        """A completed job keeps its window: the hashes, and the touches of its blocks (its own, and those
        of the job it continued from in blocks it did not scan), for the sync that continues from it."""
        window_from = summary.window_from
        tx.run("forget_touched_below", job_id=job_id, window_from=window_from)
        if summary.after_job_id:
            last = min(summary.from_block - 1, summary.to_block)
            tx.run("inherit_touched", job_id=job_id, after=summary.after_job_id, from_block=window_from, to_block=last)

    def release(self, job_id: str, owner: str) -> None:
        """Gives a running job back (shutdown): pending again, to resume from its checkpoint."""

        def give_back(tx: Transaction) -> None:
            if tx.run("release_job", job_id=job_id, owner=owner):
                self._changed(tx, job_id)

        self._write(give_back)

    def events(self, job_id: str, after: int) -> list[tuple[int, float, dict[str, Any]]]:
        """(sequence, time, job snapshot) of the changes after sequence ``after``."""
        rows = self.connector.read(lambda tx: tx.all("events_after", job_id=job_id, after=after))
        return [(row["sequence"], row["time"], json.loads(row["snapshot"])) for row in rows]

    def list_jobs(
        self,
        *,
        state: str | None,
        job_type: str | None,
        page_size: int,
        after: JobPosition | None = None,
        skip: int = 0,
        principal: str | None = None,
    ) -> JobPage:
        """Jobs newest first, after the position ``after`` (where the previous page ended), then ``skip``;
        with principal, only the jobs that principal started. ``total`` counts the filtered list."""
        filters = {"principal": principal, "state": state, "job_type": job_type}
        after_created_at, after_id = after if after is not None else (None, None)

        def page(tx: Transaction) -> tuple[int, list[Row]]:
            total = tx.one("count_jobs", **filters)["count"]
            rows = tx.all(
                "list_jobs",
                **filters,
                after_created_at=after_created_at,
                after_id=after_id,
                limit=page_size + 1,
                skip=skip,
            )
            return total, rows

        total, rows = self.connector.read(page)
        jobs = [job_from_row(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        return JobPage(jobs, (jobs[-1].created_at, jobs[-1].id) if more else None, total)

    def delete(self, job_id: str) -> bool:
        def remove(tx: Transaction) -> bool:
            removed = bool(tx.run("delete_job", job_id=job_id))
            if removed:
                self._announce(tx, job_id, None)
            return removed

        return self._write(remove)

    def purge_expired(self, retention_s: float, request_id_ttl_s: float) -> int:
        """Removes jobs that ended more than retention_s ago; forgets request_ids older than the TTL."""
        now = time.time()

        def purge(tx: Transaction) -> int:
            removed = tx.run("purge_finished_jobs", ended_before=now - retention_s)
            tx.run("forget_request_ids", created_before=now - request_id_ttl_s)
            return removed

        return self._write(purge)

    def versions(self, job_ids: list[str]) -> dict[str, int]:
        """The version of each of these jobs that exists (for the servers' job caches to compare)."""
        rows = self.connector.read(lambda tx: tx.all("job_versions", ids=orjson.dumps(job_ids).decode()))
        return {row["id"]: row["version"] for row in rows}

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (states with none are left out); for the metrics."""
        rows = self.connector.read(lambda tx: tx.all("count_by_state"))
        return {row["state"]: row["count"] for row in rows}

    # -- a job's work and result -------------------------------------------------

    def save_chunk(
        self,
        job_id: str,
        *,
        checkpoint: dict[str, Any],
        touched: list[tuple] | None = None,
        records: tuple[str, list[dict[str, Any]]] | None = None,
        owner: str | None = None,
    ) -> bool:
        """Writes what one chunk of work found, and the checkpoint after it, atomically.

        ``touched``: (kind, entity_id, block, events naming it (0: a call), created provenance or None) rows.
        With owner: writes nothing and returns False unless the job is running under that owner's
        lease (a worker that lost its lease must not write over the one that took the job over).
        """

        def save(tx: Transaction) -> bool:
            if not self._holds(tx, job_id, owner):
                return False
            if touched:
                tx.run("save_touched", job_id=job_id, rows=orjson.dumps(_distinct(touched)).decode())
            if records:
                self._append_records(tx, job_id, *records)
            tx.run("save_checkpoint", job_id=job_id, checkpoint=json.dumps(checkpoint))
            return True

        return self._write(save)

    def _append_records(self, tx: Transaction, job_id: str, kind: str, rows: list[dict[str, Any]]) -> None:
        start = tx.one("next_record_position", job_id=job_id, kind=kind)["position"]
        tx.run("save_records", job_id=job_id, kind=kind, start=start, rows=orjson.dumps(rows).decode())

    def touched(self, job_id: str, kind: str) -> dict[int, Any]:
        """Entity id -> provenance of its creating event (None when not seen), as saved so far."""
        rows = self.connector.read(lambda tx: tx.all("touched_entities", job_id=job_id, kind=kind))
        return {row["entity_id"]: json.loads(row["created"]) if row["created"] else None for row in rows}

    def touched_event_count(self, job_id: str, since: int = 0) -> int:
        """How many of the saved touches at or after block since came from events."""
        return self.connector.read(lambda tx: tx.one("touched_event_count", job_id=job_id, since=since)["count"])

    def rewind(self, job_id: str, from_block: int, checkpoint: dict[str, Any], owner: str | None = None) -> bool:
        """Forgets the touches at or after from_block and every record read, with the new checkpoint
        (owner as in save_chunk)."""

        def forget(tx: Transaction) -> bool:
            if not self._holds(tx, job_id, owner):
                return False
            tx.run("forget_touched_from", job_id=job_id, from_block=from_block)
            tx.run("forget_window_from", job_id=job_id, from_block=from_block)
            tx.run("forget_records", job_id=job_id)
            tx.run("save_checkpoint", job_id=job_id, checkpoint=json.dumps(checkpoint))
            return True

        return self._write(forget)

    def record_ids(self, job_id: str, kind: str) -> set[str]:
        rows = self.connector.read(lambda tx: tx.all("record_ids", job_id=job_id, kind=kind))
        return {row["entity_id"] for row in rows}

    def result_summary(self, job_id: str) -> ResultSummary | None:
        row = self.connector.read(lambda tx: tx.one("result_summary", job_id=job_id))
        return ResultSummary(**json.loads(row["summary"])) if row else None

    def last_completed_id(self, job_type: str, principal: str | None = None) -> str | None:
        """The most recently completed job of this type (that principal started, when given): the default
        cursor of an incremental sync."""
        row = self.connector.read(lambda tx: tx.one("last_completed_id", job_type=job_type, principal=principal))
        return row["id"] if row else None

    # -- a job's reorg window (server/engine/reorgs.py) ---------------------------

    def window(self, job_id: str) -> dict[int, str]:
        """Block -> hash of the job's window."""
        rows = self.connector.read(lambda tx: tx.all("window", job_id=job_id))
        return {row["block"]: row["hash"] for row in rows}

    def save_window(self, job_id: str, hashes: dict[int, str], *, owner: str | None = None) -> bool:
        """Replaces the job's window with these hashes (owner as in save_chunk)."""

        def save(tx: Transaction) -> bool:
            if not self._holds(tx, job_id, owner):
                return False
            tx.run("forget_window", job_id=job_id)
            tx.many("save_window_block", [{"job_id": job_id, "block": b, "hash": h} for b, h in sorted(hashes.items())])
            return True

        return self._write(save)

    def kept_touches(self, job_id: str, kind: str, since: int) -> set[int]:
        """The ids of one kind a completed job's result listed from blocks at or after since (within its window)."""
        rows = self.connector.read(lambda tx: tx.all("kept_touches", job_id=job_id, kind=kind, since=since))
        return {row["entity_id"] for row in rows}

    def records(self, job_id: str, kind: str, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The result's records of one kind, in order, from offset.

        Reads page by page: a connection is held while a page is read, not while the caller iterates."""
        left = limit
        after: int | None = None  # the last position read; later pages continue from it rather than by OFFSET
        while left is None or left > 0:
            size = RECORDS_PAGE if left is None else min(RECORDS_PAGE, left)
            rows = self._records_page(job_id, kind, size, offset, after)
            for row in rows:
                yield json.loads(row["data"])
            if len(rows) < size:
                return
            after = rows[-1]["position"]
            if left is not None:
                left -= len(rows)

    def _records_page(self, job_id: str, kind: str, size: int, offset: int, after: int | None) -> list[Row]:
        """``size`` records from ``offset``, or after the position ``after`` when it is not None."""
        if after is None:
            return self.connector.read(
                lambda tx: tx.all("records_from_offset", job_id=job_id, kind=kind, limit=size, offset=offset)
            )
        return self.connector.read(
            lambda tx: tx.all("records_after_position", job_id=job_id, kind=kind, after=after, limit=size)
        )

    def replace_records(self, job_id: str, kind: str, records: list[dict[str, Any]], owner: str | None = None) -> bool:
        """Rewrites records already saved (same id, same position); owner as in save_chunk."""

        def replace(tx: Transaction) -> bool:
            if not self._holds(tx, job_id, owner):
                return False
            tx.many(
                "replace_record",
                [{"job_id": job_id, "kind": kind, "entity_id": r["id"], "data": json.dumps(r)} for r in records],
            )
            return True

        return self._write(replace)
