"""The job store: where jobs, their progress, checkpoints and results live.

``JobStore`` is the small interface the rest of the server uses (in the manner
of procrastinate's job managers). ``SqlJobStore`` holds its logic in SQL that
SQLite and PostgreSQL both run; ``SQLiteJobStore`` runs it on one SQLite file
in WAL mode, ``server.jobs.store_pg.PostgresJobStore`` on a PostgreSQL database that
replicas share. Every write is one transaction, so a crash at any point leaves
the store consistent:

- a job moves ``pending -> running -> completed | failed | cancelled`` and a
  terminal state never changes again;
- every change bumps the job's ``version`` and appends a snapshot to
  ``job_events`` in the same transaction: the WatchJob stream replays from it;
- a running job holds a lease (``owner``, ``lease_expires``) renewed by its
  heartbeat; a job whose lease expired (its process died) is claimed again and
  resumes from its checkpoint;
- the sync writes the entities it found and the records it read chunk by chunk
  (``touched``, ``records``), with its checkpoint, in one transaction each.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

TERMINAL_STATES = ("completed", "failed", "cancelled")
STATES = ("pending", "running", *TERMINAL_STATES)


@dataclass
class JobRecord:
    id: str
    type: str  # blockchain_sync | proposals_sync | petitions_sync | reports_sync
    request: dict[str, Any]  # the StartSyncRequest as received, in JSON form
    timeout_s: int
    state: str = "pending"
    progress: int = 0
    message: str = "Waiting for a worker"
    request_id: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    from_block: int | None = None
    to_block: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    attempts: int = 0  # how many times a worker claimed it (more than 1: resumed)
    version: int = 0  # bumped by every change; the watch stream's sequence
    principal: str | None = (
        None  # the API token that started it, when jobs are scoped per token (server/service/auth.py)
    )

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResultSummary:
    from_block: int
    to_block: int
    to_block_hash: str
    chain_id: int
    events_count: int
    processing_time_ms: int
    record_counts: dict[str, int]


@dataclass
class JobPage:
    jobs: list[JobRecord]
    next_page_token: str
    total: int


class JobStore(Protocol):
    """What the servicer and the runner need from a store."""

    def create(self, job: JobRecord) -> JobRecord:
        """Stores a new pending job, or returns the job already stored under its request_id."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def claim_next(self, owner: str, lease_s: float) -> JobRecord | None:
        """Takes the oldest pending job, or a running one whose lease expired, for owner."""

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Renews the lease; False when the job is no longer this owner's to run (or cancel was asked)."""

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

        ``touched``: (kind, entity_id, block, log_index or -1, created provenance or None) rows.
        With owner: writes nothing and returns False unless the job is running under that owner's
        lease (a worker that lost its lease must not write over the one that took the job over).
        """

    def touched(self, job_id: str, kind: str) -> dict[int, Any]:
        """Entity id -> provenance of its creating event (None when not seen), as saved so far."""

    def touched_event_count(self, job_id: str) -> int: ...

    def rewind(self, job_id: str, from_block: int, checkpoint: dict[str, Any], owner: str | None = None) -> bool:
        """Forgets the touches at or after from_block and every record read, with the new checkpoint
        (owner as in save_chunk)."""

    def record_ids(self, job_id: str, kind: str) -> set[str]: ...

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A pending job ends cancelled at once; a running one is flagged and its worker stops."""

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

    def release(self, job_id: str, owner: str) -> None:
        """Gives a running job back (shutdown): pending again, to resume from its checkpoint."""

    def events(self, job_id: str, after: int) -> list[tuple[int, float, dict[str, Any]]]:
        """(sequence, time, job snapshot) of the changes after sequence ``after``."""

    def list_jobs(
        self,
        *,
        state: str | None,
        job_type: str | None,
        page_size: int,
        page_token: str,
        skip: int = 0,
        principal: str | None = None,
    ) -> JobPage:
        """Jobs newest first; with principal, only the jobs that principal started."""

    def delete(self, job_id: str) -> bool: ...

    def purge_expired(self, retention_s: float, request_id_ttl_s: float) -> int:
        """Removes jobs that ended more than retention_s ago; forgets request_ids older than the TTL."""

    def result_summary(self, job_id: str) -> ResultSummary | None: ...

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (states with none are left out); for the metrics."""

    def last_completed(self, job_type: str) -> ResultSummary | None:
        """The result summary of the most recently completed job of this type, if any (for incremental syncs)."""

    def records(self, job_id: str, kind: str, offset: int = 0, limit: int | None = None) -> Iterable[dict[str, Any]]:
        """The result's records of one kind, in order, from offset."""

    def replace_records(self, job_id: str, kind: str, records: list[dict[str, Any]], owner: str | None = None) -> bool:
        """Rewrites records already saved (same id, same position); owner as in save_chunk."""

    def ipfs_cached(self, cids: list[str]) -> dict[str, str]:
        """CID -> content of those CIDs the cache holds."""

    def ipfs_save(self, contents: dict[str, str]) -> None:
        """Caches verified content by CID (a CID already cached keeps its content)."""


def encode_page_token(offset_key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(offset_key)).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, str]:
    """Raises ValueError on a token this store did not make (any shape, any size)."""
    try:
        padded = token + "=" * (-len(token) % 4)
        created_at, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(created_at, (int, float)) or isinstance(created_at, bool) or not isinstance(job_id, str):
            raise ValueError("wrong shape")
        value = float(created_at)
        if not math.isfinite(value):
            raise ValueError("not a time")
        return value, job_id
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(token) from exc


MIGRATIONS = [
    # 1: the first schema
    """
    CREATE TABLE jobs (
        id               TEXT PRIMARY KEY,
        type             TEXT NOT NULL,
        state            TEXT NOT NULL,
        progress         INTEGER NOT NULL DEFAULT 0,
        message          TEXT NOT NULL DEFAULT '',
        request          TEXT NOT NULL,
        request_id       TEXT,
        timeout_s        INTEGER NOT NULL,
        created_at       REAL NOT NULL,
        started_at       REAL,
        ended_at         REAL,
        error_code       TEXT,
        error_message    TEXT,
        from_block       INTEGER,
        to_block         INTEGER,
        stats            TEXT NOT NULL DEFAULT '{}',
        checkpoint       TEXT NOT NULL DEFAULT '{}',
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        attempts         INTEGER NOT NULL DEFAULT 0,
        owner            TEXT,
        lease_expires    REAL,
        version          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_claim ON jobs (state, created_at);
    CREATE INDEX jobs_ended ON jobs (ended_at);
    CREATE INDEX jobs_listing ON jobs (created_at DESC, id DESC);
    CREATE TABLE job_events (
        job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        sequence INTEGER NOT NULL,
        time     REAL NOT NULL,
        snapshot TEXT NOT NULL,
        PRIMARY KEY (job_id, sequence)
    );
    CREATE TABLE touched (
        job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        block     INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        created   TEXT,
        PRIMARY KEY (job_id, kind, entity_id, block, log_index)
    );
    CREATE TABLE records (
        job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        position  INTEGER NOT NULL,
        data      TEXT NOT NULL,
        PRIMARY KEY (job_id, kind, entity_id)
    );
    CREATE INDEX records_order ON records (job_id, kind, position);
    CREATE TABLE results (
        job_id  TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        summary TEXT NOT NULL
    );
    CREATE TABLE request_ids (
        request_id TEXT PRIMARY KEY,
        job_id     TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 2: jobs remember the API token that started them (several tokens: each sees its own jobs)
    """
    ALTER TABLE jobs ADD COLUMN principal TEXT;
    CREATE INDEX jobs_by_principal ON jobs (principal, created_at);
    """,
    # 3: IPFS content behind the records' *Cid fields, by CID (content under a CID never changes; server/jobs/ipfs.py)
    """
    CREATE TABLE ipfs_content (
        cid        TEXT PRIMARY KEY,
        content    TEXT NOT NULL,
        fetched_at REAL NOT NULL
    );
    """,
]

_JSON_COLUMNS = ("request", "stats", "checkpoint")  # JSON text in both stores
JOB_FIELDS = [f for f in JobRecord.__dataclass_fields__]
JOB_COLUMNS = ", ".join(JOB_FIELDS)  # the jobs columns that make a JobRecord, in its field order
RECORDS_PAGE = 1000  # records() reads this many rows per query


def _owner_clause(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE fragment that fences a write to the lease holder, when one is named."""
    return (" AND owner = ?", (owner,)) if owner is not None else ("", ())


def row_to_job(row: Iterable[Any]) -> JobRecord:
    """A JobRecord from a jobs row selected as ``SELECT {JOB_COLUMNS}`` (a sqlite3.Row or a tuple)."""
    values = dict(zip(JOB_FIELDS, row))
    for k in _JSON_COLUMNS:
        values[k] = json.loads(values[k])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


class SqlJobStore:
    """The JobStore logic both stores share: one SQL text (``?`` placeholders) on SQLite and PostgreSQL.

    A subclass provides ``_tx()`` (one write transaction) and ``_read()`` (a
    connection for reads), each yielding an object with ``execute(sql, params)``
    and ``executemany(sql, rows)`` that return a DB-API cursor, and the few
    pieces that differ by dialect (the class attributes below, ``_lock``).
    """

    _CLAIM_SQL: str  # selects the id of the job claim_next takes (one parameter: now)
    _GREATEST = "MAX"  # the two-argument maximum
    _FOR_UPDATE = ""  # appended to the SELECT that request_cancel decides on

    def _tx(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _lock(self, db: Any, key: str) -> None:
        """Serialises transactions on key until this one ends (nothing to do where writers are serialised)."""

    # -- helpers -----------------------------------------------------------

    def _load(self, db: Any, job_id: str) -> JobRecord | None:
        row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row_to_job(row) if row else None

    def _changed(self, db: Any, job_id: str) -> JobRecord:
        """After an UPDATE that bumped version: append the event and return the job."""
        job = self._load(db, job_id)
        assert job is not None
        db.execute(
            "INSERT INTO job_events (job_id, sequence, time, snapshot) VALUES (?, ?, ?, ?)",
            (job.id, job.version, time.time(), json.dumps(job.snapshot())),
        )
        return job

    # -- the interface -----------------------------------------------------

    def create(self, job: JobRecord) -> JobRecord:
        with self._tx() as db:
            if job.request_id:
                # The key is per principal: two tokens' requestIds never meet.
                key = f"{job.principal}\x1f{job.request_id}" if job.principal else job.request_id
                self._lock(db, f"chainsync.request_id:{key}")  # one job per key, across replicas
                row = db.execute("SELECT job_id FROM request_ids WHERE request_id = ?", (key,)).fetchone()
                existing = row and self._load(db, row[0])
                if existing:
                    return existing
                db.execute(
                    "INSERT INTO request_ids (request_id, job_id, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (request_id) DO UPDATE SET job_id = excluded.job_id, created_at = excluded.created_at",
                    (key, job.id, job.created_at),
                )
            db.execute(
                "INSERT INTO jobs (id, type, state, progress, message, request, request_id, timeout_s, created_at, "
                "version, principal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (
                    job.id,
                    job.type,
                    job.state,
                    job.progress,
                    job.message,
                    json.dumps(job.request),
                    job.request_id,
                    job.timeout_s,
                    job.created_at,
                    job.principal,
                ),
            )
            return self._changed(db, job.id)

    def get(self, job_id: str) -> JobRecord | None:
        with self._read() as db:
            return self._load(db, job_id)

    def _lease_clock(self, db: Any) -> float:
        """Now, as leases count it. SQLite: this process's clock (one server per file)."""
        return time.time()

    def claim_next(self, owner: str, lease_s: float) -> JobRecord | None:
        started = time.time()  # this process's clock, like the timeout it is compared with
        with self._tx() as db:
            now = self._lease_clock(db)
            row = db.execute(self._CLAIM_SQL, (now,)).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), owner = ?, "
                "lease_expires = ?, attempts = attempts + 1, "
                "message = CASE WHEN attempts > 0 THEN 'Resuming from checkpoint' ELSE 'Starting' END, "
                "version = version + 1 WHERE id = ?",
                (started, owner, now + lease_s, row[0]),
            )
            return self._changed(db, row[0])

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND owner = ? AND state = 'running' "
                "AND NOT cancel_requested",
                (self._lease_clock(db) + lease_s, job_id, owner),
            ).rowcount
        return bool(changed)

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
        fence, fence_params = _owner_clause(owner)
        with self._tx() as db:
            changed = db.execute(
                f"UPDATE jobs SET progress = {self._GREATEST}(progress, ?), message = ?, stats = ?, "
                "from_block = COALESCE(?, from_block), to_block = COALESCE(?, to_block), version = version + 1 "
                f"WHERE id = ? AND state = 'running'{fence}",
                (progress, message, json.dumps(stats), from_block, to_block, job_id, *fence_params),
            ).rowcount
            if changed:
                self._changed(db, job_id)
        return bool(changed)

    def _holds(self, db: Any, job_id: str, owner: str | None) -> bool:
        """Inside a write transaction: may owner write this job's work? (Always, without an owner.)"""
        if owner is None:
            return True
        row = db.execute(f"SELECT state, owner FROM jobs WHERE id = ?{self._FOR_UPDATE}", (job_id,)).fetchone()
        return row is not None and row[0] == "running" and row[1] == owner

    def save_chunk(
        self,
        job_id: str,
        *,
        checkpoint: dict[str, Any],
        touched: list[tuple] | None = None,
        records: tuple[str, list[dict[str, Any]]] | None = None,
        owner: str | None = None,
    ) -> bool:
        with self._tx() as db:
            if not self._holds(db, job_id, owner):
                return False
            if touched:
                db.executemany(
                    "INSERT INTO touched (job_id, kind, entity_id, block, log_index, created) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (job_id, kind, entity_id, block, log_index) DO UPDATE SET created = excluded.created",
                    [(job_id, kind, i, b, li, json.dumps(c) if c else None) for kind, i, b, li, c in touched],
                )
            if records:
                kind, rows = records
                (start,) = db.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM records WHERE job_id = ? AND kind = ?", (job_id, kind)
                ).fetchone()
                db.executemany(
                    "INSERT INTO records (job_id, kind, entity_id, position, data) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (job_id, kind, entity_id) DO UPDATE SET position = excluded.position, "
                    "data = excluded.data",
                    [(job_id, kind, r["id"], start + n, json.dumps(r)) for n, r in enumerate(rows)],
                )
            db.execute("UPDATE jobs SET checkpoint = ? WHERE id = ?", (json.dumps(checkpoint), job_id))
        return True

    def touched(self, job_id: str, kind: str) -> dict[int, Any]:
        with self._read() as db:
            rows = db.execute(
                "SELECT entity_id, MAX(created) FROM touched WHERE job_id = ? AND kind = ? GROUP BY entity_id",
                (job_id, kind),
            ).fetchall()
        return {entity_id: json.loads(created) if created else None for entity_id, created in rows}

    def touched_event_count(self, job_id: str) -> int:
        with self._read() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM touched WHERE job_id = ? AND log_index >= 0", (job_id,)
            ).fetchone()
        return count

    def rewind(self, job_id: str, from_block: int, checkpoint: dict[str, Any], owner: str | None = None) -> bool:
        with self._tx() as db:
            if not self._holds(db, job_id, owner):
                return False
            db.execute("DELETE FROM touched WHERE job_id = ? AND block >= ?", (job_id, from_block))
            db.execute("DELETE FROM records WHERE job_id = ?", (job_id,))
            db.execute("UPDATE jobs SET checkpoint = ? WHERE id = ?", (json.dumps(checkpoint), job_id))
        return True

    def record_ids(self, job_id: str, kind: str) -> set[str]:
        with self._read() as db:
            rows = db.execute("SELECT entity_id FROM records WHERE job_id = ? AND kind = ?", (job_id, kind)).fetchall()
        return {r[0] for r in rows}

    def request_cancel(self, job_id: str) -> JobRecord | None:
        with self._tx() as db:
            # _FOR_UPDATE locks the row: a claim in flight has either committed (we see running) or skips it.
            row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?{self._FOR_UPDATE}", (job_id,)).fetchone()
            job = row_to_job(row) if row else None
            if job is None or job.finished:
                return job
            if job.state == "pending":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', ended_at = ?, message = 'Cancelled before it started', "
                    "error_code = 'JOB_CANCELLED', error_message = 'cancelled by request', version = version + 1 "
                    "WHERE id = ?",
                    (time.time(), job_id),
                )
            else:
                db.execute(
                    "UPDATE jobs SET cancel_requested = TRUE, message = 'Cancelling', version = version + 1 "
                    "WHERE id = ?",
                    (job_id,),
                )
            return self._changed(db, job_id)

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
        assert state in TERMINAL_STATES, state
        fence, fence_params = _owner_clause(owner)
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, message = ?, error_code = ?, error_message = ?, ended_at = ?, owner = NULL, "
                "lease_expires = NULL, progress = CASE WHEN ? = 'completed' THEN 100 ELSE progress END, "
                "stats = COALESCE(?, stats), version = version + 1 "
                f"WHERE id = ? AND state NOT IN ('completed', 'failed', 'cancelled'){fence}",
                (
                    state,
                    message,
                    error_code,
                    error_message,
                    time.time(),
                    state,
                    json.dumps(stats) if stats is not None else None,
                    job_id,
                    *fence_params,
                ),
            ).rowcount
            if not changed:
                return False
            if summary is not None:
                db.execute(
                    "INSERT INTO results (job_id, summary) VALUES (?, ?) "
                    "ON CONFLICT (job_id) DO UPDATE SET summary = excluded.summary",
                    (job_id, json.dumps(asdict(summary))),
                )
            db.execute("DELETE FROM touched WHERE job_id = ?", (job_id,))
            if state != "completed":
                db.execute("DELETE FROM records WHERE job_id = ?", (job_id,))
            self._changed(db, job_id)
        return True

    def release(self, job_id: str, owner: str) -> None:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'pending', owner = NULL, lease_expires = NULL, "
                "message = 'Interrupted by a server shutdown; waiting to resume', version = version + 1 "
                "WHERE id = ? AND owner = ? AND state = 'running'",
                (job_id, owner),
            ).rowcount
            if changed:
                self._changed(db, job_id)

    def events(self, job_id: str, after: int) -> list[tuple[int, float, dict[str, Any]]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT sequence, time, snapshot FROM job_events WHERE job_id = ? AND sequence > ? ORDER BY sequence",
                (job_id, after),
            ).fetchall()
        return [(seq, t, json.loads(snap)) for seq, t, snap in rows]

    def list_jobs(
        self,
        *,
        state: str | None,
        job_type: str | None,
        page_size: int,
        page_token: str,
        skip: int = 0,
        principal: str | None = None,
    ) -> JobPage:
        where, params = [], []
        if principal is not None:
            where.append("principal = ?")
            params.append(principal)
        if state:
            where.append("state = ?")
            params.append(state)
        if job_type:
            where.append("type = ?")
            params.append(job_type)
        page_where, page_params = list(where), list(params)
        if page_token:
            created_at, job_id = decode_page_token(page_token)
            page_where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            page_params += [created_at, created_at, job_id]
        with self._read() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {' AND '.join(where) or 'TRUE'}", params).fetchone()
            rows = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(page_where) or 'TRUE'} "
                "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                [*page_params, page_size + 1, skip],
            ).fetchall()
        jobs = [row_to_job(r) for r in rows[:page_size]]
        token = encode_page_token((jobs[-1].created_at, jobs[-1].id)) if len(rows) > page_size else ""
        return JobPage(jobs, token, total)

    def delete(self, job_id: str) -> bool:
        with self._tx() as db:
            return bool(db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount)

    def purge_expired(self, retention_s: float, request_id_ttl_s: float) -> int:
        now = time.time()
        with self._tx() as db:
            removed = db.execute(
                "DELETE FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND ended_at < ?",
                (now - retention_s,),
            ).rowcount
            db.execute("DELETE FROM request_ids WHERE created_at < ?", (now - request_id_ttl_s,))
        return removed

    def count_by_state(self) -> dict[str, int]:
        with self._read() as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def last_completed(self, job_type: str) -> ResultSummary | None:
        with self._read() as db:
            row = db.execute(
                "SELECT results.summary FROM jobs JOIN results ON results.job_id = jobs.id "
                "WHERE jobs.type = ? AND jobs.state = 'completed' ORDER BY jobs.ended_at DESC LIMIT 1",
                (job_type,),
            ).fetchone()
        return ResultSummary(**json.loads(row[0])) if row else None

    def result_summary(self, job_id: str) -> ResultSummary | None:
        with self._read() as db:
            row = db.execute("SELECT summary FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return ResultSummary(**json.loads(row[0])) if row else None

    def records(self, job_id: str, kind: str, offset: int = 0, limit: int | None = None) -> Iterable[dict[str, Any]]:
        """Reads page by page: a connection is held while a page is read, not while the caller iterates."""
        left = limit
        after: int | None = None  # the last position read; later pages continue from it rather than by OFFSET
        while left is None or left > 0:
            size = RECORDS_PAGE if left is None else min(RECORDS_PAGE, left)
            with self._read() as db:
                if after is None:
                    rows = db.execute(
                        "SELECT position, data FROM records WHERE job_id = ? AND kind = ? "
                        "ORDER BY position LIMIT ? OFFSET ?",
                        (job_id, kind, size, offset),
                    ).fetchall()
                else:
                    rows = db.execute(
                        "SELECT position, data FROM records WHERE job_id = ? AND kind = ? AND position > ? "
                        "ORDER BY position LIMIT ?",
                        (job_id, kind, after, size),
                    ).fetchall()
            for _, data in rows:
                yield json.loads(data)
            if len(rows) < size:
                return
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def replace_records(self, job_id: str, kind: str, records: list[dict[str, Any]], owner: str | None = None) -> bool:
        with self._tx() as db:
            if not self._holds(db, job_id, owner):
                return False
            db.executemany(
                "UPDATE records SET data = ? WHERE job_id = ? AND kind = ? AND entity_id = ?",
                [(json.dumps(r), job_id, kind, r["id"]) for r in records],
            )
        return True

    def ipfs_cached(self, cids: list[str]) -> dict[str, str]:
        if not cids:
            return {}
        with self._read() as db:
            rows = db.execute(
                f"SELECT cid, content FROM ipfs_content WHERE cid IN ({', '.join('?' * len(cids))})", cids
            ).fetchall()
        return {cid: content for cid, content in rows}

    def ipfs_save(self, contents: dict[str, str]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO ipfs_content (cid, content, fetched_at) VALUES (?, ?, ?) ON CONFLICT (cid) DO NOTHING",
                [(cid, content, now) for cid, content in contents.items()],
            )


class SQLiteJobStore(SqlJobStore):
    """JobStore on one SQLite file (WAL); one connection per thread.

    One server process per file: SQLite's locking keeps concurrent writers
    correct, but replicas belong on PostgreSQL.
    """

    # rowid: creation order among jobs created in the same instant
    _CLAIM_SQL = (
        "SELECT id FROM jobs WHERE state = 'pending' OR (state = 'running' AND lease_expires < ?) "
        "ORDER BY created_at, rowid LIMIT 1"
    )

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")  # writers queue here: one at a time, so _lock has nothing to do
            return self.db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> SQLiteJobStore._Tx:
        return self._Tx(self._connect())

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._connect()

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for statement in filter(str.strip, script.split(";")):
                        db.execute(statement)
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def release_orphans(self) -> int:
        """Running jobs whose process is gone become claimable now (one server per SQLite file)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET lease_expires = 0 WHERE state = 'running'").rowcount
