"""The connector: what the job store and the content cache need from a database, and no more.

The store's logic (job_store.py, content_cache.py) is dialect-free Python that
hands units of work to a connector. A unit of work is a function of one
``Transaction``: ``read(work)`` runs it on a connection for reads,
``write(work)`` in ONE transaction (all of it commits, or none), and both
return what it returns. Inside, queries go by name (sql/queries.sql and the
dialect's file) with named parameters, and rows read by column name
(``row["id"]``).

A connector may run a unit of work again from the start (PostgreSQL, when its
connection was lost), so units must be safe to repeat: upserts, updates
guarded by the state they expect, no side effects outside the transaction.

Implementations: sqlite.py (one file, one server) and postgres.py (replicas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

T = TypeVar("T")
Row: TypeAlias = Any  # a sqlite3.Row or a psycopg dict row: row["column"]


class Transaction(Protocol):
    """One connection inside a unit of work; ``query`` is a query's name."""

    def one(self, query: str, /, **params: Any) -> Row | None:
        """The first row of the query's answer; None when it has none."""

    def all(self, query: str, /, **params: Any) -> list[Row]:
        """Every row of the query's answer."""

    def run(self, query: str, /, **params: Any) -> int:
        """Runs a statement; returns how many rows it changed."""

    def many(self, query: str, rows: Iterable[Mapping[str, Any]], /) -> None:
        """Runs a statement once for each mapping of parameters."""

    def script(self, sql: str, /) -> None:
        """Runs SQL text of several statements and no parameters (a migration)."""


class Connector(Protocol):
    dialect: str  # "sqlite" | "postgres": its sql/<dialect>.sql and migrations/<dialect>/

    def read(self, work: Callable[[Transaction], T]) -> T:
        """work(tx) on a connection for reads (each statement sees what was committed when it ran)."""

    def write(self, work: Callable[[Transaction], T]) -> T:
        """work(tx) in one write transaction, committed when it returns and rolled back when it raises."""

    def migrate(self, work: Callable[[Transaction], T]) -> T:
        """work(tx) in one write transaction that holds the migration lock (migrate.py, at open)."""

    def lock(self, tx: Transaction, key: str) -> None:
        """Serialises the transactions that lock ``key`` until this one ends."""

    def now(self, tx: Transaction) -> float:
        """Now, in seconds since the epoch, as leases count it (the clock all servers of the store agree on)."""

    def announce(self, tx: Transaction, payload: str) -> None:
        """Tells the other servers of the store, when the transaction commits (nothing where there are none)."""

    def listen(self, on_announce: Callable[[str | None], None], stop: Any) -> None:
        """Blocks until stop is set, calling on_announce(payload) for what any server announces, and
        on_announce(None) on each (re)connection; returns at once where there are no other servers."""

    def close(self) -> None:
        """Closes the connections (and files) it holds."""
