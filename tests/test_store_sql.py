"""The job store's SQL files and connectors: queries by name, psycopg's parameters, migrations, retries.

The PostgreSQL tests use the server and the schema-per-test fixture of tests/test_store.py.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import psycopg
import pytest

from server.jobs.store import JobStore, SQLiteConnector, StoreInUse, open_single_server
from server.jobs.store import postgres as postgres_module
from server.jobs.store.migrate import migrations
from server.jobs.store.postgres import PostgresConnector, to_pyformat
from server.jobs.store.queries import load_queries, parse_queries
from server.retry import RetryPolicy
from tests.stack import wait_until
from tests.test_store import PG_URL, new_job, pg_schema, running  # noqa: F401 (fixtures)

STORE_DIR = Path(postgres_module.__file__).parent


# -- the queries files ---------------------------------------------------------------


def test_parse_queries_reads_name_comment_and_statement() -> None:
    text = (
        "-- The file's own comment, skipped.\n\n"
        "-- first_query --\n-- What it does\nSELECT 1\nFROM t;\n\n"
        "-- second --\n-- Two lines\n-- of comment\nDELETE FROM t WHERE x = ';';\n"
    )
    assert parse_queries(text) == {"first_query": "SELECT 1\nFROM t", "second": "DELETE FROM t WHERE x = ';'"}
    with pytest.raises(ValueError, match="does not end"):
        parse_queries("-- q --\n-- no semicolon\nSELECT 1\n")
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- q --\nSELECT 1;\n-- q --\nSELECT 2;\n")


def _queries_run_by(module: str) -> set[str]:
    return set(re.findall(r"tx\.(?:one|all|run|many)\(\s*\"(\w+)\"", (STORE_DIR / module).read_text()))


def test_every_query_the_store_runs_exists_in_both_dialects() -> None:
    sqlite, postgres = load_queries("sqlite"), load_queries("postgres")
    shared = set(sqlite) & set(postgres)
    dialect_free = _queries_run_by("job_store.py") | _queries_run_by("content_cache.py") | _queries_run_by("migrate.py")
    assert dialect_free and dialect_free <= shared, sorted(dialect_free - shared)
    assert set(sqlite) - shared == _queries_run_by("sqlite.py") == {"release_orphans"}
    assert (
        set(postgres) - shared
        == _queries_run_by("postgres.py")
        == {"lock", "lease_clock", "current_schema", "announce"}
    )


def test_to_pyformat_turns_named_parameters_into_psycopgs_once() -> None:
    assert to_pyformat("SELECT * FROM t WHERE id = :job_id AND n > :n_2") == (
        "SELECT * FROM t WHERE id = %(job_id)s AND n > %(n_2)s"
    )
    assert to_pyformat("SELECT :cids::jsonb, x::text, CAST(:a AS TEXT)") == (
        "SELECT %(cids)s::jsonb, x::text, CAST(%(a)s AS TEXT)"
    )
    assert to_pyformat("SELECT ':not_a_param', 'it''s :no', \"col:x\" FROM t") == (
        "SELECT ':not_a_param', 'it''s :no', \"col:x\" FROM t"
    )
    assert to_pyformat("SELECT '100%' LIKE :p -- 50% :not\n, 1 % 2") == (
        "SELECT '100%%' LIKE %(p)s -- 50%% :not\n, 1 %% 2"
    )
    assert to_pyformat("SELECT 1") == "SELECT 1"
    for name, query in postgres_module.QUERIES.items():
        assert not re.search(r"(?<![:\w]):[A-Za-z_]", query.replace("::", "")), name


def test_migrations_are_numbered_files_per_dialect() -> None:
    for dialect in ("sqlite", "postgres"):
        found = migrations(dialect)
        assert [(m.version, m.name) for m in found] == [
            (1, "jobs"),
            (2, "principal"),
            (3, "ipfs_content"),
            (4, "job_blocks"),
            (5, "touched_by_block"),
        ]
        assert all(m.script.strip().endswith(";") for m in found)


# -- the SQLite connector: one server per file ------------------------------------------


def test_one_server_per_sqlite_file_and_a_dead_servers_jobs_resume(tmp_path) -> None:
    path = str(tmp_path / "jobs.sqlite3")
    first = JobStore(open_single_server(path))
    job = running(first)
    with pytest.raises(StoreInUse):
        open_single_server(path)
    assert first.claim_next("b", 30) is None, "the lease holds while its server lives"
    first.close()  # as the OS does when the process dies
    second = JobStore(open_single_server(path))
    resumed = second.claim_next("b", 30)
    assert resumed is not None and resumed.id == job.id and resumed.attempts == 2
    second.close()


FILL_4_MB = (
    "CREATE TABLE filler (x TEXT);"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
    "INSERT INTO filler SELECT hex(randomblob(1000)) FROM n"
)


def test_the_servers_commits_leave_the_wal_checkpoint_to_a_thread_of_its_own(tmp_path) -> None:
    """A commit that takes the WAL past 1,000 pages copies it into the database file itself (an fsync in some
    job's last write); the server's connector leaves that to its checkpointer thread, and stops it on close."""
    plain = SQLiteConnector(tmp_path / "plain.db")
    plain.write(lambda tx: tx.script(FILL_4_MB))
    assert (tmp_path / "plain.db").stat().st_size > 4_000_000, "SQLite's own: the commit checkpointed"
    plain.close()

    path = tmp_path / "server.db"
    wal_threads = lambda: sum(t.name == "chainsync-wal" and t.is_alive() for t in threading.enumerate())  # noqa: E731
    before = wal_threads()
    server = open_single_server(str(path))
    assert wal_threads() == before + 1
    server.write(lambda tx: tx.script(FILL_4_MB))
    assert path.stat().st_size < 1_000_000, "the commit left its pages in the WAL"
    wait_until(lambda: path.stat().st_size > 4_000_000, 5, what="the checkpointer copied them into the file")
    server.close()
    assert wal_threads() == before, "closing the connector stops its checkpointer"


# -- the PostgreSQL connector: a lost connection ------------------------------------------


def test_a_unit_of_work_whose_connection_is_lost_runs_again_on_a_fresh_one(pg_schema, caplog) -> None:  # noqa: F811
    connector = PostgresConnector(PG_URL, schema=pg_schema, max_size=2)
    try:
        job = JobStore(connector).create(new_job())
        backends: list[int] = []

        def read_state(tx) -> str:
            backends.append(tx.conn.info.backend_pid)
            if len(backends) == 1:  # the first try's connection dies under it
                with psycopg.connect(PG_URL, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (backends[0],))
            tx.run("save_checkpoint", job_id=job.id, checkpoint='{"n": 1}')
            return tx.one("get_job", job_id=job.id)["checkpoint"]

        with caplog.at_level(logging.WARNING, logger="chainsync.store"):
            assert connector.write(read_state) == '{"n": 1}'
        assert len(backends) == 2 and backends[0] != backends[1], "the second try ran on a fresh connection"
        [lost] = [r for r in caplog.records if r.name == "chainsync.store"]
        assert lost.getMessage() == (
            "PostgreSQL connection lost in test_a_unit_of_work_whose_connection_is_lost_runs_again_on_a_fresh_one; "
            "trying again on a fresh connection"
        )
        assert getattr(lost, "try") == 1 and lost.error
    finally:
        connector.close()


def test_a_connection_lost_every_time_ends_in_the_connection_error(pg_schema, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(postgres_module, "LOST_CONNECTION", RetryPolicy(attempts=4, base_delay_s=0.001, jitter=False))
    connector = PostgresConnector(PG_URL, schema=pg_schema, max_size=1)
    tries: list[int] = []

    def lost(tx) -> None:
        tries.append(1)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    def wrong(tx) -> None:
        tries.append(1)
        raise psycopg.errors.UndefinedTable("not a connection problem")

    try:
        with pytest.raises(psycopg.OperationalError, match="closed the connection"):
            connector.read(lost)
        assert len(tries) == 4
        tries.clear()
        with pytest.raises(psycopg.errors.UndefinedTable):
            connector.write(wrong)
        assert len(tries) == 1, "only a lost connection is tried again"
    finally:
        connector.close()
