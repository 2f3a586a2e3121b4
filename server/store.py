"""The job store: where jobs, their progress and their results live.

``JobStore`` is the small interface the rest of the server uses; ``SQLiteJobStore``
implements it on one SQLite file in WAL mode (every write one transaction, so a
crash at any point leaves the file consistent). Records of a result are written
chunk by chunk as the sync produces them, never held all at once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

TERMINAL_STATES = ("completed", "failed", "cancelled")


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
    version: int = 0  # bumped by every change; the watch stream's sequence

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass
class ResultSummary:
    from_block: int
    to_block: int
    to_block_hash: str
    chain_id: int
    events_count: int
    processing_time_ms: int
    record_counts: dict[str, int]


class JobStore(Protocol):
    def create(self, job: JobRecord) -> JobRecord:
        """Stores a new pending job, or returns the existing one with the same request_id."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def claim_next(self) -> JobRecord | None:
        """Marks the oldest pending job running and returns it; None when there is none."""

    def update_progress(
        self,
        job_id: str,
        *,
        progress: int,
        message: str,
        stats: dict[str, Any],
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> None:
        """Progress never goes down; a finished job is not touched."""

    def add_records(self, job_id: str, kind: str, records: list[dict[str, Any]]) -> None: ...

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        message: str,
        error_code: str | None = None,
        error_message: str | None = None,
        summary: ResultSummary | None = None,
    ) -> bool:
        """Moves a job that is not finished yet to a terminal state; False if it already was."""

    def result_summary(self, job_id: str) -> ResultSummary | None: ...

    def records(self, job_id: str, kind: str) -> Iterable[dict[str, Any]]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    type          TEXT NOT NULL,
    state         TEXT NOT NULL,
    progress      INTEGER NOT NULL DEFAULT 0,
    message       TEXT NOT NULL DEFAULT '',
    request       TEXT NOT NULL,
    request_id    TEXT UNIQUE,
    timeout_s     INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    started_at    REAL,
    ended_at      REAL,
    error_code    TEXT,
    error_message TEXT,
    from_block    INTEGER,
    to_block      INTEGER,
    stats         TEXT NOT NULL DEFAULT '{}',
    version       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
CREATE TABLE IF NOT EXISTS results (
    job_id  TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind     TEXT NOT NULL,
    position INTEGER NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (job_id, kind, position)
);
"""

_COLUMNS = (
    "id, type, state, progress, message, request, request_id, timeout_s, created_at, started_at, "
    "ended_at, error_code, error_message, from_block, to_block, stats, version"
)


def _row_to_job(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["request"] = json.loads(values["request"])
    values["stats"] = json.loads(values["stats"])
    return JobRecord(**values)


class SQLiteJobStore:
    """JobStore on one SQLite file; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connect().executescript(_SCHEMA)

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

    def _tx(self) -> "_Tx":
        return self._Tx(self._connect())

    def create(self, job: JobRecord) -> JobRecord:
        with self._tx() as db:
            if job.request_id:
                row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE request_id = ?", (job.request_id,)).fetchone()
                if row:
                    return _row_to_job(row)
            db.execute(
                "INSERT INTO jobs (id, type, state, progress, message, request, request_id, timeout_s, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.type, job.state, job.progress, job.message, json.dumps(job.request),
                 job.request_id, job.timeout_s, job.created_at),
            )
        return job

    def get(self, job_id: str) -> JobRecord | None:
        row = self._connect().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def claim_next(self) -> JobRecord | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'pending' ORDER BY created_at, rowid LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', started_at = ?, message = 'Starting', "
                "version = version + 1 WHERE id = ?",
                (time.time(), row["id"]),
            )
            return _row_to_job(db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def update_progress(
        self,
        job_id: str,
        *,
        progress: int,
        message: str,
        stats: dict[str, Any],
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET progress = MAX(progress, ?), message = ?, stats = ?, "
                "from_block = COALESCE(?, from_block), to_block = COALESCE(?, to_block), version = version + 1 "
                "WHERE id = ? AND state = 'running'",
                (progress, message, json.dumps(stats), from_block, to_block, job_id),
            )

    def add_records(self, job_id: str, kind: str, records: list[dict[str, Any]]) -> None:
        with self._tx() as db:
            (start,) = db.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM records WHERE job_id = ? AND kind = ?", (job_id, kind)
            ).fetchone()
            db.executemany(
                "INSERT INTO records (job_id, kind, position, data) VALUES (?, ?, ?, ?)",
                [(job_id, kind, start + i, json.dumps(r)) for i, r in enumerate(records)],
            )

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        message: str,
        error_code: str | None = None,
        error_message: str | None = None,
        summary: ResultSummary | None = None,
    ) -> bool:
        assert state in TERMINAL_STATES, state
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, message = ?, error_code = ?, error_message = ?, ended_at = ?, "
                "progress = CASE WHEN ? = 'completed' THEN 100 ELSE progress END, version = version + 1 "
                "WHERE id = ? AND state NOT IN ('completed', 'failed', 'cancelled')",
                (state, message, error_code, error_message, time.time(), state, job_id),
            ).rowcount
            if changed and summary is not None:
                db.execute(
                    "INSERT OR REPLACE INTO results (job_id, summary) VALUES (?, ?)",
                    (job_id, json.dumps(summary.__dict__)),
                )
            if changed and state != "completed":
                db.execute("DELETE FROM records WHERE job_id = ?", (job_id,))
        return bool(changed)

    def result_summary(self, job_id: str) -> ResultSummary | None:
        row = self._connect().execute("SELECT summary FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return ResultSummary(**json.loads(row["summary"])) if row else None

    def records(self, job_id: str, kind: str) -> Iterable[dict[str, Any]]:
        cursor = self._connect().execute(
            "SELECT data FROM records WHERE job_id = ? AND kind = ? ORDER BY position", (job_id, kind)
        )
        for (data,) in cursor:
            yield json.loads(data)
