"""The PostgreSQL connector: one database (and schema) that any number of server replicas share.

- Connections come from a ``psycopg_pool.ConnectionPool``; reads run in
  autocommit, a write is one transaction. Rows are dicts.
- Opening migrates the schema on a connection of its own first (a wrong DSN or
  password fails there, with PostgreSQL's message): the schema is created if
  missing, and the migrations run under a transaction-level advisory lock on
  its name, so replicas starting at once migrate it once. DDL is
  transactional: a failed migration leaves nothing.
- ``lock`` takes a transaction-level advisory lock on a key; ``now`` is the
  database's clock (``clock_timestamp()``), so replicas whose clocks drift
  apart still agree on when a lease runs out.
- A replica keeps working through a lost connection (a PostgreSQL restart, a
  terminated backend): a unit of work that fails with
  ``psycopg.OperationalError`` was rolled back by PostgreSQL, and is run again
  from the start on a fresh connection from the pool (``LOST_CONNECTION``, the
  project's retry policy of server/retry.py). The units of work are safe to
  repeat (upserts, guarded updates), and reads obviously are.

The queries' ``:name`` parameters become psycopg's ``%(name)s`` once, at
import (``to_pyformat``). Columns and values mirror SQLite's exactly: JSON is
stored as text (the same ``json.dumps`` bytes), timestamps as double
precision seconds since the epoch, ids in the "C" collation (byte order, as
SQLite compares them), so a ``JobRecord``, an event and a list position mean
the same on both.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from server.jobs.store.connector import Row, Transaction
from server.jobs.store.migrate import apply_migrations
from server.jobs.store.queries import load_queries
from server.retry import GaveUp, RetryPolicy, retry_call

log = logging.getLogger("chainsync.store")

T = TypeVar("T")
LOST_CONNECTION = RetryPolicy(attempts=4, base_delay_s=0.2, jitter=False)  # waits 0.2, 0.4, 0.8 s
LISTEN_POLL_S = 0.5  # how often the LISTEN loop looks at its stop event
LISTEN_RETRY_S = 1.0  # before connecting again after the LISTEN connection was lost

# What to_pyformat looks at: quoted strings and names, comments, casts, named parameters, percent signs.
_SQL_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|::|:([A-Za-z_][A-Za-z0-9_]*)|%""")


def to_pyformat(query: str) -> str:
    """A query's ``:name`` parameters in psycopg's spelling, ``%(name)s``.

    ``::`` casts, quoted strings and names, and comments keep their colons; every ``%`` is doubled, as
    psycopg reads ``%`` anywhere in the text. (Not understood: dollar-quoted strings, array slices.)
    """

    def replace(token: re.Match[str]) -> str:
        if token.group(1):
            return f"%({token.group(1)})s"
        return token.group(0).replace("%", "%%")

    return _SQL_TOKEN.sub(replace, query)


QUERIES = {name: to_pyformat(query) for name, query in load_queries("postgres").items()}


class PostgresTransaction:
    """A pooled connection, running the store's queries by name."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def one(self, query: str, /, **params: Any) -> Row | None:
        return self.conn.execute(QUERIES[query], params).fetchone()

    def all(self, query: str, /, **params: Any) -> list[Row]:
        return self.conn.execute(QUERIES[query], params).fetchall()

    def run(self, query: str, /, **params: Any) -> int:
        return self.conn.execute(QUERIES[query], params).rowcount

    def many(self, query: str, rows: Iterable[Mapping[str, Any]], /) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(QUERIES[query], list(rows))

    def script(self, sql: str, /) -> None:
        self.conn.execute(sql)  # no parameters: several statements may run at once


def _caller_name(work: Callable[..., Any]) -> str:
    """The function that made a unit of work: ``claim_next`` for a closure defined in JobStore.claim_next."""
    qualname = getattr(work, "__qualname__", type(work).__name__)
    return qualname.split(".<locals>", 1)[0].rsplit(".", 1)[-1]


class PostgresConnector:
    """The store in a PostgreSQL database.

    ``schema``: the schema that holds the tables (created if missing); without
    it the tables go in the connection's current schema (the first of its
    ``search_path`` that exists, e.g. set with ``options=-csearch_path%3D...``).
    """

    dialect = "postgres"

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
        self.connect_timeout_s = connect_timeout_s
        apply_migrations(self)
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=self._configure,
            check=ConnectionPool.check_connection,  # a connection broken by a database restart is replaced
            name="chainsync-store",
            open=True,
        )

    def close(self) -> None:
        self._pool.close()

    def _configure(self, conn: psycopg.Connection) -> None:
        if self.schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    def read(self, work: Callable[[Transaction], T]) -> T:
        return self._retrying(work, in_transaction=False)

    def write(self, work: Callable[[Transaction], T]) -> T:
        return self._retrying(work, in_transaction=True)

    def _run(self, work: Callable[[Transaction], T], in_transaction: bool) -> T:
        with self._pool.connection() as conn:
            if not in_transaction:
                return work(PostgresTransaction(conn))
            with conn.transaction():
                return work(PostgresTransaction(conn))

    def _retrying(self, work: Callable[[Transaction], T], in_transaction: bool) -> T:
        """work on a pooled connection; again on a fresh one when the connection was lost."""

        def lost(tries: int, error: BaseException, wait_s: float) -> None:
            log.warning(
                "PostgreSQL connection lost in %s; trying again on a fresh connection",
                _caller_name(work),
                extra={"try": tries, "error": str(error).strip()},
            )

        try:
            return retry_call(
                lambda _: self._run(work, in_transaction),
                LOST_CONNECTION,
                transient=lambda error: isinstance(error, psycopg.OperationalError),
                on_retry=lost,
            )
        except GaveUp as gave_up:
            raise gave_up.last from None  # the caller sees the connection's error, as after one try

    def migrate(self, work: Callable[[Transaction], T]) -> T:
        """work in one transaction on a connection of its own, the schema made and locked (no retry: at start)."""
        with psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout_s), row_factory=dict_row
        ) as conn:
            with conn.transaction():
                tx = PostgresTransaction(conn)
                if self.schema:
                    self.lock(tx, f"chainsync.migrate:{self.schema}")
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                    self._configure(conn)
                current_schema = tx.one("current_schema")["schema"]
                if current_schema is None:
                    raise ValueError(
                        "no schema of the connection's search_path exists; create it, or name one with ?schema=..."
                    )
                if not self.schema:
                    self.lock(tx, f"chainsync.migrate:{current_schema}")
                return work(tx)

    def lock(self, tx: Transaction, key: str) -> None:
        tx.one("lock", key=key)

    def now(self, tx: Transaction) -> float:
        return float(tx.one("lease_clock")["now"])

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this store: one per schema, so stores in other schemas hear nothing of it."""
        return "chainsync_" + hashlib.sha256((self.schema or "").encode()).hexdigest()[:20]

    def announce(self, tx: Transaction, payload: str) -> None:
        tx.one("announce", channel=self.channel, payload=payload)  # delivered at commit, dropped on rollback

    def listen(self, on_announce: Callable[[str | None], None], stop: threading.Event) -> None:
        """LISTENs on a connection of its own until stop is set, connecting again (and saying so with None)
        when the connection is lost."""
        while not stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout_s)) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    on_announce(None)  # whatever was announced before this connection listened: look again
                    while not stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_POLL_S):
                            on_announce(note.payload)
            except psycopg.OperationalError as exc:
                log.warning("PostgreSQL LISTEN connection lost; connecting again", extra={"error": str(exc).strip()})
                stop.wait(LISTEN_RETRY_S)
