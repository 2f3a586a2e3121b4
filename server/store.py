"""The job store: where jobs, their progress, checkpoints and results live.

``JobStore`` is the small interface the rest of the server uses (in the manner
of procrastinate's job managers); ``SQLiteJobStore`` implements it on one
SQLite file in WAL mode. Every write is one transaction, so a crash at any
point leaves the store consistent:

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
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
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

    def update_progress(self, job_id: str, *, progress: int, message: str, stats: dict[str, Any],
                        from_block: int | None = None, to_block: int | None = None) -> None:
        """Progress never goes down; only a running job is touched."""

    def save_chunk(self, job_id: str, *, checkpoint: dict[str, Any], touched: list[tuple] | None = None,
                   records: tuple[str, list[dict[str, Any]]] | None = None) -> None:
        """Writes what one chunk of work found, and the checkpoint after it, atomically.

        ``touched``: (kind, entity_id, block, log_index or -1, created provenance or None) rows.
        """

    def touched(self, job_id: str, kind: str) -> dict[int, Any]:
        """Entity id -> provenance of its creating event (None when not seen), as saved so far."""

    def touched_event_count(self, job_id: str) -> int: ...

    def rewind(self, job_id: str, from_block: int, checkpoint: dict[str, Any]) -> None:
        """Forgets the touches at or after from_block and every record read, with the new checkpoint."""

    def record_ids(self, job_id: str, kind: str) -> set[str]: ...

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A pending job ends cancelled at once; a running one is flagged and its worker stops."""

    def finish(self, job_id: str, state: str, *, message: str, error_code: str | None = None,
               error_message: str | None = None, summary: ResultSummary | None = None,
               stats: dict[str, Any] | None = None) -> bool:
        """Moves an unfinished job to a terminal state (with its last stats); False if it already was in one."""

    def release(self, job_id: str, owner: str) -> None:
        """Gives a running job back (shutdown): pending again, to resume from its checkpoint."""

    def events(self, job_id: str, after: int) -> list[tuple[int, float, dict[str, Any]]]:
        """(sequence, time, job snapshot) of the changes after sequence ``after``."""

    def list_jobs(self, *, state: str | None, job_type: str | None, page_size: int, page_token: str,
                  skip: int = 0) -> JobPage: ...

    def delete(self, job_id: str) -> bool: ...

    def purge_expired(self, retention_s: float, request_id_ttl_s: float) -> int:
        """Removes jobs that ended more than retention_s ago; forgets request_ids older than the TTL."""

    def result_summary(self, job_id: str) -> ResultSummary | None: ...

    def last_completed(self, job_type: str) -> ResultSummary | None:
        """The result summary of the most recently completed job of this type, if any (for incremental syncs)."""

    def records(self, job_id: str, kind: str, offset: int = 0, limit: int | None = None) -> Iterable[dict[str, Any]]:
        """The result's records of one kind, in order, from offset."""


def encode_page_token(offset_key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(offset_key)).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, str]:
    """Raises ValueError on a token this store did not make."""
    padded = token + "=" * (-len(token) % 4)
    created_at, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    return float(created_at), str(job_id)


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
]

_JSON_COLUMNS = ("request", "stats", "checkpoint")  # JSON text in both stores
JOB_FIELDS = [f for f in JobRecord.__dataclass_fields__]
JOB_COLUMNS = ", ".join(JOB_FIELDS)  # the jobs columns that make a JobRecord, in its field order


def row_to_job(row: Mapping[str, Any]) -> JobRecord:
    """A JobRecord from a jobs row (sqlite3.Row, or a dict of JOB_FIELDS to values); shared by both stores."""
    values = {k: row[k] for k in JOB_FIELDS}
    for k in _JSON_COLUMNS:
        values[k] = json.loads(values[k])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


class SQLiteJobStore:
    """JobStore on one SQLite file (WAL); one connection per thread.

    One server process per file: SQLite's locking keeps concurrent writers
    correct, but replicas belong on PostgreSQL.
    """

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
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> SQLiteJobStore._Tx:
        return self._Tx(self._connect())

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

    # -- helpers -----------------------------------------------------------

    def _load(self, db: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row_to_job(row) if row else None

    def _changed(self, db: sqlite3.Connection, job_id: str) -> JobRecord:
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
                row = db.execute("SELECT job_id FROM request_ids WHERE request_id = ?", (job.request_id,)).fetchone()
                existing = row and self._load(db, row["job_id"])
                if existing:
                    return existing
                db.execute(
                    "INSERT OR REPLACE INTO request_ids (request_id, job_id, created_at) VALUES (?, ?, ?)",
                    (job.request_id, job.id, job.created_at),
                )
            db.execute(
                "INSERT INTO jobs (id, type, state, progress, message, request, request_id, timeout_s, created_at, "
                "version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (job.id, job.type, job.state, job.progress, job.message, json.dumps(job.request),
                 job.request_id, job.timeout_s, job.created_at),
            )
            return self._changed(db, job.id)

    def get(self, job_id: str) -> JobRecord | None:
        return self._load(self._connect(), job_id)

    def claim_next(self, owner: str, lease_s: float) -> JobRecord | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'pending' OR (state = 'running' AND lease_expires < ?) "
                "ORDER BY created_at, rowid LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), owner = ?, "
                "lease_expires = ?, attempts = attempts + 1, "
                "message = CASE WHEN attempts > 0 THEN 'Resuming from checkpoint' ELSE 'Starting' END, "
                "version = version + 1 WHERE id = ?",
                (now, owner, now + lease_s, row["id"]),
            )
            return self._changed(db, row["id"])

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND owner = ? AND state = 'running' "
                "AND cancel_requested = 0",
                (time.time() + lease_s, job_id, owner),
            ).rowcount
        return bool(changed)

    def update_progress(self, job_id: str, *, progress: int, message: str, stats: dict[str, Any],
                        from_block: int | None = None, to_block: int | None = None) -> None:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET progress = MAX(progress, ?), message = ?, stats = ?, "
                "from_block = COALESCE(?, from_block), to_block = COALESCE(?, to_block), version = version + 1 "
                "WHERE id = ? AND state = 'running'",
                (progress, message, json.dumps(stats), from_block, to_block, job_id),
            ).rowcount
            if changed:
                self._changed(db, job_id)

    def save_chunk(self, job_id: str, *, checkpoint: dict[str, Any], touched: list[tuple] | None = None,
                   records: tuple[str, list[dict[str, Any]]] | None = None) -> None:
        with self._tx() as db:
            if touched:
                db.executemany(
                    "INSERT OR REPLACE INTO touched (job_id, kind, entity_id, block, log_index, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(job_id, kind, i, b, li, json.dumps(c) if c else None) for kind, i, b, li, c in touched],
                )
            if records:
                kind, rows = records
                (start,) = db.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM records WHERE job_id = ? AND kind = ?", (job_id, kind)
                ).fetchone()
                db.executemany(
                    "INSERT OR REPLACE INTO records (job_id, kind, entity_id, position, data) VALUES (?, ?, ?, ?, ?)",
                    [(job_id, kind, r["id"], start + n, json.dumps(r)) for n, r in enumerate(rows)],
                )
            db.execute("UPDATE jobs SET checkpoint = ? WHERE id = ?", (json.dumps(checkpoint), job_id))

    def touched(self, job_id: str, kind: str) -> dict[int, Any]:
        rows = self._connect().execute(
            "SELECT entity_id, MAX(created) FROM touched WHERE job_id = ? AND kind = ? GROUP BY entity_id",
            (job_id, kind),
        )
        return {entity_id: json.loads(created) if created else None for entity_id, created in rows}

    def touched_event_count(self, job_id: str) -> int:
        (count,) = self._connect().execute(
            "SELECT COUNT(*) FROM touched WHERE job_id = ? AND log_index >= 0", (job_id,)
        ).fetchone()
        return count

    def rewind(self, job_id: str, from_block: int, checkpoint: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM touched WHERE job_id = ? AND block >= ?", (job_id, from_block))
            db.execute("DELETE FROM records WHERE job_id = ?", (job_id,))
            db.execute("UPDATE jobs SET checkpoint = ? WHERE id = ?", (json.dumps(checkpoint), job_id))

    def record_ids(self, job_id: str, kind: str) -> set[str]:
        rows = self._connect().execute("SELECT entity_id FROM records WHERE job_id = ? AND kind = ?", (job_id, kind))
        return {r[0] for r in rows}

    def request_cancel(self, job_id: str) -> JobRecord | None:
        with self._tx() as db:
            job = self._load(db, job_id)
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
                    "UPDATE jobs SET cancel_requested = 1, message = 'Cancelling', version = version + 1 WHERE id = ?",
                    (job_id,),
                )
            return self._changed(db, job_id)

    def finish(self, job_id: str, state: str, *, message: str, error_code: str | None = None,
               error_message: str | None = None, summary: ResultSummary | None = None,
               stats: dict[str, Any] | None = None) -> bool:
        assert state in TERMINAL_STATES, state
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, message = ?, error_code = ?, error_message = ?, ended_at = ?, owner = NULL, "
                "lease_expires = NULL, progress = CASE WHEN ? = 'completed' THEN 100 ELSE progress END, "
                "stats = COALESCE(?, stats), version = version + 1 "
                "WHERE id = ? AND state NOT IN ('completed', 'failed', 'cancelled')",
                (state, message, error_code, error_message, time.time(), state,
                 json.dumps(stats) if stats is not None else None, job_id),
            ).rowcount
            if not changed:
                return False
            if summary is not None:
                db.execute("INSERT OR REPLACE INTO results (job_id, summary) VALUES (?, ?)",
                           (job_id, json.dumps(asdict(summary))))
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

    def release_orphans(self) -> int:
        """Running jobs whose process is gone become claimable now (one server per SQLite file)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET lease_expires = 0 WHERE state = 'running'").rowcount

    def events(self, job_id: str, after: int) -> list[tuple[int, float, dict[str, Any]]]:
        rows = self._connect().execute(
            "SELECT sequence, time, snapshot FROM job_events WHERE job_id = ? AND sequence > ? ORDER BY sequence",
            (job_id, after),
        )
        return [(seq, t, json.loads(snap)) for seq, t, snap in rows]

    def list_jobs(self, *, state: str | None, job_type: str | None, page_size: int, page_token: str,
                  skip: int = 0) -> JobPage:
        where, params = [], []
        if state:
            where.append("state = ?")
            params.append(state)
        if job_type:
            where.append("type = ?")
            params.append(job_type)
        db = self._connect()
        filter_sql = " AND ".join(where) or "1"
        (total,) = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {filter_sql}", params).fetchone()
        page_where, page_params = list(where), list(params)
        if page_token:
            created_at, job_id = decode_page_token(page_token)
            page_where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            page_params += [created_at, created_at, job_id]
        rows = db.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(page_where) or '1'} "
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

    def last_completed(self, job_type: str) -> ResultSummary | None:
        row = self._connect().execute(
            "SELECT results.summary FROM jobs JOIN results ON results.job_id = jobs.id "
            "WHERE jobs.type = ? AND jobs.state = 'completed' ORDER BY jobs.ended_at DESC LIMIT 1",
            (job_type,),
        ).fetchone()
        return ResultSummary(**json.loads(row["summary"])) if row else None

    def result_summary(self, job_id: str) -> ResultSummary | None:
        row = self._connect().execute("SELECT summary FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return ResultSummary(**json.loads(row["summary"])) if row else None

    def records(self, job_id: str, kind: str, offset: int = 0, limit: int | None = None) -> Iterable[dict[str, Any]]:
        cursor = self._connect().execute(
            "SELECT data FROM records WHERE job_id = ? AND kind = ? ORDER BY position LIMIT ? OFFSET ?",
            (job_id, kind, -1 if limit is None else limit, offset),
        )
        for (data,) in cursor:
            yield json.loads(data)
