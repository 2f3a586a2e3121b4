"""The job store on PostgreSQL: the same ``JobStore`` as ``SQLiteJobStore``, for replicas.

Several ``chainsync serve`` processes may share one database (and schema).
The store's logic is ``server.jobs.store.SqlJobStore``'s, the same SQL as on
SQLite; what is PostgreSQL's own is here:

- the schema is created and migrated by whichever store opens it first:
  ``PG_MIGRATIONS`` are applied in order, each recorded in ``schema_version``,
  all under a transaction-level advisory lock, so replicas starting at once
  do not race (DDL is transactional: a failed migration leaves nothing);
- ``claim_next`` picks the oldest claimable job with
  ``SELECT … FOR UPDATE SKIP LOCKED`` and takes it in the same transaction,
  so two replicas never claim the same job and never wait on each other;
  ``request_cancel`` locks the row it decides on; creating a job with a
  request_id holds an advisory lock on the key;
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

import functools
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from server.jobs.store import SqlJobStore

log = logging.getLogger("chainsync.store")

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
    # 2: jobs remember the API token that started them (several tokens: each sees its own jobs)
    """
    ALTER TABLE jobs ADD COLUMN principal TEXT;
    CREATE INDEX jobs_by_principal ON jobs (principal, created_at);
    """,
    # 3: IPFS content behind the records' *Cid fields, by CID (server/jobs/ipfs.py)
    """
    CREATE TABLE ipfs_content (
        cid        TEXT COLLATE "C" PRIMARY KEY,
        content    TEXT NOT NULL,
        fetched_at DOUBLE PRECISION NOT NULL
    );
    """,
]


@functools.lru_cache(maxsize=256)
def _pg(query: str) -> str:
    """The shared SQL's ``?`` placeholders in psycopg's spelling (the shared SQL has no other ``?`` or ``%``)."""
    return query.replace("?", "%s")


class _Db:
    """A pooled connection seen through the interface SqlJobStore uses (sqlite3.Connection's)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.conn.execute(_pg(query), params)

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor:
        cursor = self.conn.cursor()
        cursor.executemany(_pg(query), rows)
        return cursor


class PostgresJobStore(SqlJobStore):
    """JobStore on PostgreSQL; any number of server processes may share it.

    ``schema``: the schema that holds the tables (created if missing); without
    it the tables go in the connection's current schema (the first of its
    ``search_path`` that exists, e.g. set with ``options=-csearch_path%3D...``).
    """

    # seq: creation order among jobs created in the same instant; a job another transaction is claiming is skipped
    _CLAIM_SQL = (
        "SELECT id FROM jobs WHERE state = 'pending' OR (state = 'running' AND lease_expires < ?) "
        "ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    _GREATEST = "GREATEST"
    _FOR_UPDATE = " FOR UPDATE"

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
    def _tx(self) -> Iterator[_Db]:
        with self._pool.connection() as conn, conn.transaction():
            yield _Db(conn)

    @contextmanager
    def _read(self) -> Iterator[_Db]:
        with self._pool.connection() as conn:
            yield _Db(conn)

    def _lease_clock(self, db: _Db) -> float:
        """Now, as leases count it: the database's clock, so replicas whose clocks drift apart
        still agree on when a lease runs out (a slow clock would otherwise take live jobs over)."""
        return float(db.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])

    def _lock(self, db: _Db, key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def _migrate(self, conn: psycopg.Connection) -> None:
        db = _Db(conn)
        with conn.transaction():
            if self.schema:
                self._lock(db, f"chainsync.migrate:{self.schema}")
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                self._configure(conn)
            (current_schema,) = conn.execute("SELECT current_schema()").fetchone()
            if current_schema is None:
                raise ValueError(
                    "no schema of the connection's search_path exists; create it, or name one with ?schema=..."
                )
            if not self.schema:
                self._lock(db, f"chainsync.migrate:{current_schema}")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            for version, script in enumerate(PG_MIGRATIONS, start=1):
                if version > current:
                    conn.execute(script)
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))


# A replica keeps working through a lost database connection (a PostgreSQL restart, a
# terminated backend): a method whose connection broke mid-transaction is rolled back by
# PostgreSQL and run again on a fresh connection from the pool, a few times. The writes
# are safe to repeat (upserts, guarded updates), and the reads obviously are.
_LOST_CONNECTION_TRIES = 4


def _retry_on_lost_connection(method):
    @functools.wraps(method)
    def retrying(self, *args, **kwargs):
        for attempt in range(_LOST_CONNECTION_TRIES):
            try:
                return method(self, *args, **kwargs)
            except psycopg.OperationalError as exc:
                if attempt + 1 == _LOST_CONNECTION_TRIES:
                    raise
                log.warning(
                    "PostgreSQL connection lost in %s; trying again on a fresh connection",
                    method.__name__,
                    extra={"try": attempt + 1, "error": str(exc).strip()},
                )
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    return retrying


for _name in (
    "create", "get", "claim_next", "heartbeat", "update_progress", "save_chunk", "touched", "touched_event_count",
    "rewind", "record_ids", "request_cancel", "finish", "release", "events", "list_jobs", "delete", "purge_expired",
    "last_completed", "result_summary", "count_by_state", "replace_records", "ipfs_cached", "ipfs_save",
):  # fmt: skip
    setattr(PostgresJobStore, _name, _retry_on_lost_connection(getattr(SqlJobStore, _name)))
