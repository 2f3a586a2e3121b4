"""The SQLite connector: the store in one file, used by one server process.

One connection per thread (WAL, synchronous=NORMAL, foreign keys on, rows as
``sqlite3.Row``). Reads run on it in autocommit; a write is one ``BEGIN
IMMEDIATE`` transaction, so writers queue one at a time and need no locks of
their own. The lease clock is this process's.

SQLite's locking keeps several processes correct, but a file belongs to one
server (replicas belong on PostgreSQL): ``open_single_server`` holds
``<file>.lock`` for the life of the process and makes the jobs a dead server
left running claimable at once.

The server's connector copies the WAL into the database file from a thread
of its own (``background_checkpoints``). SQLite otherwise does it inside the
commit that takes the WAL past 1,000 pages, with an fsync, in whichever job's
write that is: 10 to 20 ms of a job's last steps (docs/decisions.md). Commits
still checkpoint past ``WAL_AUTOCHECKPOINT_PAGES``, should the thread fall
behind.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from server.jobs.store.connector import Row, Transaction
from server.jobs.store.migrate import apply_migrations
from server.jobs.store.queries import load_queries

T = TypeVar("T")
QUERIES = load_queries("sqlite")
CHECKPOINT_EVERY_S = 0.5  # how often the server's thread copies the WAL into the database file
WAL_AUTOCHECKPOINT_PAGES = 16_000  # a commit checkpoints past this many WAL pages (64 MiB): the thread fell behind

log = logging.getLogger("chainsync.store")


class StoreInUse(Exception):
    """Another server process holds the SQLite file's lock file."""


class SQLiteTransaction:
    """A thread's connection, running the store's queries by name."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def one(self, query: str, /, **params: Any) -> Row | None:
        return self.db.execute(QUERIES[query], params).fetchone()

    def all(self, query: str, /, **params: Any) -> list[Row]:
        return self.db.execute(QUERIES[query], params).fetchall()

    def run(self, query: str, /, **params: Any) -> int:
        return self.db.execute(QUERIES[query], params).rowcount

    def many(self, query: str, rows: Iterable[Mapping[str, Any]], /) -> None:
        self.db.executemany(QUERIES[query], rows)

    def script(self, sql: str, /) -> None:
        # Statement by statement: executescript() would commit the transaction first.
        for statement in filter(str.strip, sql.split(";")):
            self.db.execute(statement)


class SQLiteConnector:
    """The store in one SQLite file (created, with its folder, if missing; migrated when opened)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, background_checkpoints: bool = False) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.lock_file: IO[str] | None = None  # held by open_single_server
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if background_checkpoints:
            self._checkpointer = threading.Thread(target=self._checkpoints, name="chainsync-wal", daemon=True)
        apply_migrations(self)
        if self._checkpointer is not None:
            self._checkpointer.start()

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            if self._checkpointer is not None:
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._local.db = db
        return db

    def _checkpoints(self) -> None:
        """The checkpointer's loop, until close: a PASSIVE checkpoint (it waits for no reader or writer)
        every CHECKPOINT_EVERY_S."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_EVERY_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the next one copies what this one could not
                    log.warning("WAL checkpoint failed", extra={"error": str(exc)})
        finally:
            db.close()

    def read(self, work: Callable[[Transaction], T]) -> T:
        return work(SQLiteTransaction(self._connection()))

    def write(self, work: Callable[[Transaction], T]) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")  # writers queue here: one at a time, so lock() has nothing to do
        try:
            result = work(SQLiteTransaction(db))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def migrate(self, work: Callable[[Transaction], T]) -> T:
        return self.write(work)  # the write lock is the migration lock

    def lock(self, tx: Transaction, key: str) -> None:
        """Nothing to do: writers are serialised by BEGIN IMMEDIATE."""

    def announce(self, tx: Transaction, payload: str) -> None:
        """One server per file: no one to tell."""

    def listen(self, on_announce: Callable[[str | None], None], stop: Any) -> None:
        """One server per file: every change is this server's own."""

    def now(self, tx: Transaction) -> float:
        return time.time()  # one server per file: its clock is the only one

    def release_orphans(self) -> int:
        """Running jobs become claimable now; how many there were."""
        return self.write(lambda tx: tx.run("release_orphans"))

    def close(self) -> None:
        """Closes this thread's connection, the checkpointer and the lock file (other threads' connections
        close with them)."""
        self._stop_checkpoints.set()
        if self._checkpointer is not None and self._checkpointer.is_alive():
            self._checkpointer.join(timeout=5)
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None


def open_single_server(path: str) -> SQLiteConnector:
    """The connector of the one server a SQLite file may have; StoreInUse when another server holds it.

    The lock file stays held (and is closed by the OS) for the life of this process. Jobs left running
    belong to a dead process, so they are made claimable now: they resume from their checkpoint. Its WAL
    is copied into the database file in the background (the module docstring).
    """
    connector = SQLiteConnector(path, background_checkpoints=True)
    lock = open(f"{path}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        connector.close()
        raise StoreInUse(path) from None
    connector.lock_file = lock
    connector.release_orphans()
    return connector
