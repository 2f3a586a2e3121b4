"""The job store on PostgreSQL: the same ``JobStore`` as ``SQLiteJobStore``, for replicas.

Several ``chainsync serve`` processes may share one database (and schema):

- the schema is created and migrated by whichever store opens it first:
  ``PG_MIGRATIONS`` are applied in order, each recorded in ``schema_version``,
  all under a transaction-level advisory lock, so replicas starting at once
  do not race (DDL is transactional: a failed migration leaves nothing);
- ``claim_next`` picks the oldest claimable job with
  ``SELECT … FOR UPDATE SKIP LOCKED`` and takes it in the same transaction,
  so two replicas never claim the same job and never wait on each other;
- a job whose replica died is not released at start (other replicas may be
  running it): its lease expires and another replica claims it;
- connections come from a ``psycopg_pool.ConnectionPool``; every write is one
  transaction, reads run in autocommit.

Columns and values mirror the SQLite store exactly: JSON is stored as text
(the same ``json.dumps`` bytes), timestamps as double precision seconds since
the epoch, ids in the "C" collation (byte order, as SQLite compares them), so a
``JobRecord``, an event and a page token mean the same on both backends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from server.store import (
    JOB_COLUMNS,
    JOB_FIELDS,
    TERMINAL_STATES,
    JobPage,
    JobRecord,
    ResultSummary,
    decode_page_token,
    encode_page_token,
    row_to_job,
)

PG_MIGRATIONS = [
    # 1: the first schema (SQLite's migration 1, in PostgreSQL types; ``seq`` is SQLite's rowid: claim order among
    # jobs created in the same instant)
    """
    CREATE TABLE jobs (
        id               TEXT COLLATE "C" PRIMARY KEY,
        seq              BIGINT GENERATED ALWAYS AS IDENTITY,
        type             TEXT NOT NULL,
        state            TEXT NOT NULL,
        progress         INTEGER NOT NULL DEFAULT 0,
        message          TEXT NOT NULL DEFAULT '',
        request          TEXT NOT NULL,
        request_id       TEXT,
        timeout_s        INTEGER NOT NULL,
        created_at       DOUBLE PRECISION NOT NULL,
        started_at       DOUBLE PRECISION,
        ended_at         DOUBLE PRECISION,
        error_code       TEXT,
        error_message    TEXT,
        from_block       BIGINT,
        to_block         BIGINT,
        stats            TEXT NOT NULL DEFAULT '{}',
        checkpoint       TEXT NOT NULL DEFAULT '{}',
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        attempts         INTEGER NOT NULL DEFAULT 0,
        owner            TEXT,
        lease_expires    DOUBLE PRECISION,
        version          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_claim ON jobs (created_at, seq) WHERE state IN ('pending', 'running');
    CREATE INDEX jobs_ended ON jobs (ended_at);
    CREATE INDEX jobs_listing ON jobs (created_at DESC, id DESC);
    CREATE TABLE job_events (
        job_id   TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        sequence INTEGER NOT NULL,
        time     DOUBLE PRECISION NOT NULL,
        snapshot TEXT NOT NULL,
        PRIMARY KEY (job_id, sequence)
    );
    CREATE TABLE touched (
        job_id    TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,
        entity_id BIGINT NOT NULL,
        block     BIGINT NOT NULL,
        log_index INTEGER NOT NULL,
        created   TEXT COLLATE "C",
        PRIMARY KEY (job_id, kind, entity_id, block, log_index)
    );
    CREATE TABLE records (
        job_id    TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        position  INTEGER NOT NULL,
        data      TEXT NOT NULL,
        PRIMARY KEY (job_id, kind, entity_id)
    );
    CREATE INDEX records_order ON records (job_id, kind, position);
    CREATE TABLE results (
        job_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        summary TEXT NOT NULL
    );
    CREATE TABLE request_ids (
        request_id TEXT PRIMARY KEY,
        job_id     TEXT COLLATE "C" NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    """,
]

RECORDS_PAGE = 1000  # records() reads this many rows per query, each on a connection from the pool


def _job(row: tuple | None) -> JobRecord | None:
    return row_to_job(dict(zip(JOB_FIELDS, row))) if row else None


class PostgresJobStore:
    """JobStore on PostgreSQL; any number of server processes may share it.

    ``schema``: the schema that holds the tables (created if missing); without
    it the tables go in the connection's current schema (the first of its
    ``search_path`` that exists, e.g. set with ``options=-csearch_path%3D...``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        # Migrate on a connection of our own first: a wrong DSN or password fails here with PostgreSQL's message.
        with psycopg.connect(dsn, autocommit=True, connect_timeout=int(connect_timeout_s)) as conn:
            self._migrate(conn)
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=ConnectionPool.check_connection,  # a connection broken by a database restart is replaced
            name="chainsync-store",
            open=True,
        )

    def close(self) -> None:
        self._pool.close()

    # -- connections ---------------------------------------------------------

    def _configure(self, conn: psycopg.Connection) -> None:
        if self.schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn:
            yield conn

    def _migrate(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            if self.schema:
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"chainsync.migrate:{self.schema}",)
                )
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                self._configure(conn)
            (current_schema,) = conn.execute("SELECT current_schema()").fetchone()
            if current_schema is None:
                raise ValueError(
                    "no schema of the connection's search_path exists; create it, or name one with ?schema=..."
                )
            if not self.schema:
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"chainsync.migrate:{current_schema}",)
                )
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            for version, script in enumerate(PG_MIGRATIONS, start=1):
                if version > current:
                    conn.execute(script)
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    # -- helpers -------------------------------------------------------------

    def _load(self, db: psycopg.Connection, job_id: str) -> JobRecord | None:
        return _job(db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone())

    def _changed(self, db: psycopg.Connection, job_id: str) -> JobRecord:
        """After an UPDATE that bumped version: append the event and return the job."""
        job = self._load(db, job_id)
        assert job is not None
        db.execute(
            "INSERT INTO job_events (job_id, sequence, time, snapshot) VALUES (%s, %s, %s, %s)",
            (job.id, job.version, time.time(), json.dumps(job.snapshot())),
        )
        return job

    # -- the interface -------------------------------------------------------

    def create(self, job: JobRecord) -> JobRecord:
        with self._tx() as db:
            if job.request_id:
                # Two replicas given the same request_id at once: the second waits here, then finds the first's job.
                db.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"chainsync.request_id:{job.request_id}",)
                )
                row = db.execute("SELECT job_id FROM request_ids WHERE request_id = %s", (job.request_id,)).fetchone()
                existing = row and self._load(db, row[0])
                if existing:
                    return existing
                db.execute(
                    "INSERT INTO request_ids (request_id, job_id, created_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (request_id) DO UPDATE SET job_id = excluded.job_id, created_at = excluded.created_at",
                    (job.request_id, job.id, job.created_at),
                )
            db.execute(
                "INSERT INTO jobs (id, type, state, progress, message, request, request_id, timeout_s, created_at, "
                "version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
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
                ),
            )
            return self._changed(db, job.id)

    def get(self, job_id: str) -> JobRecord | None:
        with self._read() as db:
            return self._load(db, job_id)

    def claim_next(self, owner: str, lease_s: float) -> JobRecord | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'pending' OR (state = 'running' AND lease_expires < %s) "
                "ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, %s), owner = %s, "
                "lease_expires = %s, attempts = attempts + 1, "
                "message = CASE WHEN attempts > 0 THEN 'Resuming from checkpoint' ELSE 'Starting' END, "
                "version = version + 1 WHERE id = %s",
                (now, owner, now + lease_s, row[0]),
            )
            return self._changed(db, row[0])

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET lease_expires = %s WHERE id = %s AND owner = %s AND state = 'running' "
                "AND NOT cancel_requested",
                (time.time() + lease_s, job_id, owner),
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
    ) -> None:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET progress = GREATEST(progress, %s), message = %s, stats = %s, "
                "from_block = COALESCE(%s, from_block), to_block = COALESCE(%s, to_block), version = version + 1 "
                "WHERE id = %s AND state = 'running'",
                (progress, message, json.dumps(stats), from_block, to_block, job_id),
            ).rowcount
            if changed:
                self._changed(db, job_id)

    def save_chunk(
        self,
        job_id: str,
        *,
        checkpoint: dict[str, Any],
        touched: list[tuple] | None = None,
        records: tuple[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        with self._tx() as db, db.cursor() as cur:
            if touched:
                cur.executemany(
                    "INSERT INTO touched (job_id, kind, entity_id, block, log_index, created) "
                    "VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (job_id, kind, entity_id, block, log_index) DO UPDATE SET created = excluded.created",
                    [(job_id, kind, i, b, li, json.dumps(c) if c else None) for kind, i, b, li, c in touched],
                )
            if records:
                kind, rows = records
                (start,) = cur.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM records WHERE job_id = %s AND kind = %s",
                    (job_id, kind),
                ).fetchone()
                cur.executemany(
                    "INSERT INTO records (job_id, kind, entity_id, position, data) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (job_id, kind, entity_id) DO UPDATE SET position = excluded.position, "
                    "data = excluded.data",
                    [(job_id, kind, r["id"], start + n, json.dumps(r)) for n, r in enumerate(rows)],
                )
            cur.execute("UPDATE jobs SET checkpoint = %s WHERE id = %s", (json.dumps(checkpoint), job_id))

    def touched(self, job_id: str, kind: str) -> dict[int, Any]:
        with self._read() as db:
            rows = db.execute(
                "SELECT entity_id, MAX(created) FROM touched WHERE job_id = %s AND kind = %s GROUP BY entity_id",
                (job_id, kind),
            ).fetchall()
        return {entity_id: json.loads(created) if created else None for entity_id, created in rows}

    def touched_event_count(self, job_id: str) -> int:
        with self._read() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM touched WHERE job_id = %s AND log_index >= 0", (job_id,)
            ).fetchone()
        return count

    def rewind(self, job_id: str, from_block: int, checkpoint: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM touched WHERE job_id = %s AND block >= %s", (job_id, from_block))
            db.execute("DELETE FROM records WHERE job_id = %s", (job_id,))
            db.execute("UPDATE jobs SET checkpoint = %s WHERE id = %s", (json.dumps(checkpoint), job_id))

    def record_ids(self, job_id: str, kind: str) -> set[str]:
        with self._read() as db:
            rows = db.execute("SELECT entity_id FROM records WHERE job_id = %s AND kind = %s", (job_id, kind))
            return {r[0] for r in rows}

    def request_cancel(self, job_id: str) -> JobRecord | None:
        with self._tx() as db:
            # Lock the row: a claim in flight either finished before (we see running) or skips it.
            row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
            job = _job(row)
            if job is None or job.finished:
                return job
            if job.state == "pending":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', ended_at = %s, message = 'Cancelled before it started', "
                    "error_code = 'JOB_CANCELLED', error_message = 'cancelled by request', version = version + 1 "
                    "WHERE id = %s",
                    (time.time(), job_id),
                )
            else:
                db.execute(
                    "UPDATE jobs SET cancel_requested = TRUE, message = 'Cancelling', version = version + 1 "
                    "WHERE id = %s",
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
    ) -> bool:
        assert state in TERMINAL_STATES, state
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = %(state)s, message = %(message)s, error_code = %(code)s, "
                "error_message = %(error)s, ended_at = %(now)s, owner = NULL, lease_expires = NULL, "
                "progress = CASE WHEN %(state)s = 'completed' THEN 100 ELSE progress END, "
                "stats = COALESCE(%(stats)s, stats), version = version + 1 "
                "WHERE id = %(id)s AND state NOT IN ('completed', 'failed', 'cancelled')",
                {
                    "state": state,
                    "message": message,
                    "code": error_code,
                    "error": error_message,
                    "now": time.time(),
                    "stats": json.dumps(stats) if stats is not None else None,
                    "id": job_id,
                },
            ).rowcount
            if not changed:
                return False
            if summary is not None:
                db.execute(
                    "INSERT INTO results (job_id, summary) VALUES (%s, %s) "
                    "ON CONFLICT (job_id) DO UPDATE SET summary = excluded.summary",
                    (job_id, json.dumps(asdict(summary))),
                )
            db.execute("DELETE FROM touched WHERE job_id = %s", (job_id,))
            if state != "completed":
                db.execute("DELETE FROM records WHERE job_id = %s", (job_id,))
            self._changed(db, job_id)
        return True

    def release(self, job_id: str, owner: str) -> None:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'pending', owner = NULL, lease_expires = NULL, "
                "message = 'Interrupted by a server shutdown; waiting to resume', version = version + 1 "
                "WHERE id = %s AND owner = %s AND state = 'running'",
                (job_id, owner),
            ).rowcount
            if changed:
                self._changed(db, job_id)

    def events(self, job_id: str, after: int) -> list[tuple[int, float, dict[str, Any]]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT sequence, time, snapshot FROM job_events WHERE job_id = %s AND sequence > %s ORDER BY sequence",
                (job_id, after),
            ).fetchall()
        return [(seq, t, json.loads(snap)) for seq, t, snap in rows]

    def list_jobs(
        self, *, state: str | None, job_type: str | None, page_size: int, page_token: str, skip: int = 0
    ) -> JobPage:
        where, params = [], []
        if state:
            where.append("state = %s")
            params.append(state)
        if job_type:
            where.append("type = %s")
            params.append(job_type)
        page_where, page_params = list(where), list(params)
        if page_token:
            created_at, job_id = decode_page_token(page_token)
            page_where.append("(created_at < %s OR (created_at = %s AND id < %s))")
            page_params += [created_at, created_at, job_id]
        with self._read() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {' AND '.join(where) or 'TRUE'}", params).fetchone()
            rows = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(page_where) or 'TRUE'} "
                "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
                [*page_params, page_size + 1, skip],
            ).fetchall()
        jobs = [_job(r) for r in rows[:page_size]]
        token = encode_page_token((jobs[-1].created_at, jobs[-1].id)) if len(rows) > page_size else ""
        return JobPage(jobs, token, total)

    def delete(self, job_id: str) -> bool:
        with self._tx() as db:
            return bool(db.execute("DELETE FROM jobs WHERE id = %s", (job_id,)).rowcount)

    def purge_expired(self, retention_s: float, request_id_ttl_s: float) -> int:
        now = time.time()
        with self._tx() as db:
            removed = db.execute(
                "DELETE FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND ended_at < %s",
                (now - retention_s,),
            ).rowcount
            db.execute("DELETE FROM request_ids WHERE created_at < %s", (now - request_id_ttl_s,))
        return removed

    def last_completed(self, job_type: str) -> ResultSummary | None:
        with self._read() as db:
            row = db.execute(
                "SELECT results.summary FROM jobs JOIN results ON results.job_id = jobs.id "
                "WHERE jobs.type = %s AND jobs.state = 'completed' ORDER BY jobs.ended_at DESC LIMIT 1",
                (job_type,),
            ).fetchone()
        return ResultSummary(**json.loads(row[0])) if row else None

    def result_summary(self, job_id: str) -> ResultSummary | None:
        with self._read() as db:
            row = db.execute("SELECT summary FROM results WHERE job_id = %s", (job_id,)).fetchone()
        return ResultSummary(**json.loads(row[0])) if row else None

    def records(self, job_id: str, kind: str, offset: int = 0, limit: int | None = None) -> Iterable[dict[str, Any]]:
        """Reads page by page (a connection is held only while a page is read, not while the caller iterates)."""
        left = limit
        after: int | None = None  # the last position read; later pages continue from it rather than by OFFSET
        while left is None or left > 0:
            size = RECORDS_PAGE if left is None else min(RECORDS_PAGE, left)
            with self._read() as db:
                if after is None:
                    rows = db.execute(
                        "SELECT position, data FROM records WHERE job_id = %s AND kind = %s "
                        "ORDER BY position LIMIT %s OFFSET %s",
                        (job_id, kind, size, offset),
                    ).fetchall()
                else:
                    rows = db.execute(
                        "SELECT position, data FROM records WHERE job_id = %s AND kind = %s AND position > %s "
                        "ORDER BY position LIMIT %s",
                        (job_id, kind, after, size),
                    ).fetchall()
            for _, data in rows:
                yield json.loads(data)
            if len(rows) < size:
                return
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)
