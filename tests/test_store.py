"""The JobStore contract, on both backends: SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432, database ``test`` (override with
CHAINSYNC_TEST_PG). Every test gets a fresh schema ``chainsync_test_<hex>``,
dropped when it ends; no other schema is touched.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import psycopg
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf.json_format import MessageToDict
from psycopg import sql

from server.jobs.store import JobRecord, JobStore, ResultSummary, SQLiteConnector, job_store, migrate
from server.jobs.store.migrate import migrations
from server.jobs.store.postgres import PostgresConnector
from tests.processes import grpc_server
from tests.stack import TERMINAL, wait_for_state

PG_URL = os.environ.get("CHAINSYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Backend:
    name: str
    open: Callable[[], JobStore]  # another store object on the same database, as another replica would have
    schema_versions: Callable[[], list[int]]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name; the schema (made by the store) is dropped at teardown."""
    schema = f"chainsync_test_{uuid.uuid4().hex}"
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    opened: list[JobStore] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite3"

        def open_store() -> JobStore:
            return JobStore(SQLiteConnector(path))

        def versions() -> list[int]:
            with sqlite3.connect(path) as db:
                return [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
    else:
        schema = request.getfixturevalue("pg_schema")

        def open_store() -> JobStore:
            store = JobStore(PostgresConnector(PG_URL, schema=schema, max_size=4))
            opened.append(store)
            return store

        def versions() -> list[int]:
            with psycopg.connect(PG_URL) as conn:
                query = sql.SQL("SELECT version FROM {}.schema_version ORDER BY version").format(sql.Identifier(schema))
                return [v for (v,) in conn.execute(query)]

    yield Backend(request.param, open_store, versions)
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> JobStore:
    return backend.open()


def new_job(
    created_at: float | None = None, *, job_type: str = "blockchain_sync", request_id: str | None = None, **request
) -> JobRecord:
    job = JobRecord(
        id=str(uuid.uuid4()), type=job_type, request=request or {"blocksBack": 10}, timeout_s=60, request_id=request_id
    )
    if created_at is not None:
        job.created_at = created_at
    return job


def running(store: JobStore, owner: str = "a", **kw) -> JobRecord:
    job = store.create(new_job(**kw))
    claimed = store.claim_next(owner, 30)
    assert claimed is not None and claimed.id == job.id
    return claimed


SUMMARY = ResultSummary(
    from_block=1,
    to_block=9,
    to_block_hash="0x09",
    chain_id=31337,
    events_count=3,
    processing_time_ms=5,
    record_counts={"proposals": 2},
)


# -- create, get, idempotency --------------------------------------------------


def test_create_stores_a_pending_job_and_a_request_id_returns_the_first_job(store: JobStore) -> None:
    first = store.create(new_job(request_id="key-1", blocksBack=5))
    assert (first.state, first.progress, first.version, first.attempts) == ("pending", 0, 1, 0)
    assert store.get(first.id) == first
    again = store.create(new_job(request_id="key-1", blocksBack=999))
    assert again == first, "same request_id: the first job, not a new one"
    other = store.create(new_job(request_id="key-2"))
    assert other.id != first.id
    assert store.get("no-such-job") is None
    store.delete(first.id)
    assert store.create(new_job(request_id="key-1")).id != first.id, "a deleted job's key starts a new job"


def test_concurrent_creates_with_one_request_id_make_one_job(backend: Backend) -> None:
    stores = [backend.open() for _ in range(6)]
    results: list[str] = []
    barrier = threading.Barrier(len(stores))

    def create(store: JobStore) -> None:
        barrier.wait()
        results.append(store.create(new_job(request_id="same")).id)

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == len(stores) and len(set(results)) == 1
    assert stores[0].list_jobs(state=None, job_type=None, page_size=10).total == 1


# -- claims and leases ----------------------------------------------------------


def test_claims_take_the_oldest_job_first(store: JobStore) -> None:
    t = time.time()
    newest = store.create(new_job(t + 2))
    oldest = store.create(new_job(t))
    tie_first = store.create(new_job(t + 1))
    tie_second = store.create(new_job(t + 1))  # same instant: creation order
    claimed = [store.claim_next("a", 30) for _ in range(4)]
    assert [j.id for j in claimed] == [oldest.id, tie_first.id, tie_second.id, newest.id]
    assert all(j.state == "running" and j.attempts == 1 and j.message == "Starting" for j in claimed)
    assert all(j.started_at is not None for j in claimed)
    assert store.claim_next("a", 30) is None


def test_concurrent_claimers_never_get_the_same_job(backend: Backend) -> None:
    store = backend.open()
    ids = {store.create(new_job()).id for _ in range(200)}
    claimers = [backend.open() for _ in range(8)]
    got: list[list[str]] = [[] for _ in claimers]
    barrier = threading.Barrier(len(claimers))

    def claim_all(n: int) -> None:
        barrier.wait()
        while (job := claimers[n].claim_next(f"owner-{n}", 30)) is not None:
            got[n].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(len(claimers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    claimed = [job_id for each in got for job_id in each]
    assert len(claimed) == len(set(claimed)) == 200, "every job claimed exactly once"
    assert set(claimed) == ids
    for each in got:
        for job_id in each[:3]:
            job = store.get(job_id)
            assert job.state == "running" and job.attempts == 1
    assert store.list_jobs(state="running", job_type=None, page_size=1).total == 200


def test_an_expired_lease_hands_the_job_to_another_owner(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    job = a.create(new_job())
    assert a.claim_next("a", 0.3).id == job.id
    a.save_chunk(job.id, checkpoint={"scannedTo": 5})
    assert b.claim_next("b", 30) is None, "the lease still holds"
    assert a.heartbeat(job.id, "a", 0.3)
    time.sleep(0.4)
    resumed = b.claim_next("b", 30)
    assert resumed is not None and resumed.id == job.id
    assert (resumed.attempts, resumed.message, resumed.checkpoint) == (2, "Resuming from checkpoint", {"scannedTo": 5})
    assert resumed.started_at == a.get(job.id).started_at, "the first start counts (timeouts span resumes)"
    assert a.heartbeat(job.id, "a", 30) is False, "the old owner learns the job is not its own any more"
    assert b.heartbeat(job.id, "b", 30) is True
    a.release(job.id, "a")
    assert b.get(job.id).state == "running", "the old owner cannot give back a job it lost"
    b.release(job.id, "b")
    released = b.get(job.id)
    assert released.state == "pending" and "waiting to resume" in released.message
    assert a.claim_next("a", 30).attempts == 3


def test_replicas_with_skewed_clocks_agree_on_leases(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases on PostgreSQL run on the database's clock: a replica whose clock is an hour slow holds
    its job as long as one with a true clock would, and one an hour fast does not block it for an hour."""
    slow, true = (JobStore(PostgresConnector(PG_URL, schema=pg_schema, max_size=2)) for _ in range(2))
    real_time = time.time
    try:
        held = slow.create(new_job())
        monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # the slow replica's clock
        assert slow.claim_next("slow", 30).id == held.id
        assert slow.heartbeat(held.id, "slow", 30)
        monkeypatch.setattr(time, "time", real_time)
        assert true.claim_next("true", 30) is None, "a lease taken by a slow clock still holds"

        dropped = true.create(new_job())
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # a fast clock
        assert slow.claim_next("fast", 0.2).id == dropped.id
        monkeypatch.setattr(time, "time", real_time)
        time.sleep(0.3)
        assert true.claim_next("true", 30).id == dropped.id, "a lease taken by a fast clock runs out on time"
    finally:
        slow.close()
        true.close()


def test_a_worker_that_lost_its_lease_cannot_write_over_the_new_one(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    job = a.create(new_job())
    a.claim_next("a", 0.2)
    assert a.save_chunk(job.id, checkpoint={"scannedTo": 3}, touched=[("reports", 1, 2, 0, None)], owner="a")
    time.sleep(0.3)
    assert b.claim_next("b", 30).id == job.id
    lost_writes = [
        a.save_chunk(job.id, checkpoint={"scannedTo": 99}, touched=[("reports", 7, 50, 0, None)], owner="a"),
        a.save_chunk(job.id, checkpoint={"scannedTo": 99}, records=("reports", [{"id": "7"}]), owner="a"),
        a.rewind(job.id, 0, {"scannedTo": -1}, owner="a"),
        a.update_progress(job.id, progress=90, message="stale", stats={}, owner="a"),
        a.finish(job.id, "completed", message="stale", summary=SUMMARY, owner="a"),
    ]
    assert lost_writes == [False] * 5
    now = b.get(job.id)
    assert (now.state, now.checkpoint, now.progress) == ("running", {"scannedTo": 3}, 0)
    assert set(b.touched(job.id, "reports")) == {1} and b.record_ids(job.id, "reports") == set()
    assert b.update_progress(job.id, progress=50, message="mine", stats={}, owner="b")
    assert b.finish(job.id, "completed", message="done", summary=SUMMARY, owner="b")


# -- progress, terminal states, cancel -----------------------------------------------


def test_progress_never_goes_down_and_a_terminal_state_never_changes(store: JobStore) -> None:
    pending = store.create(new_job())
    store.update_progress(pending.id, progress=50, message="x", stats={})
    assert store.get(pending.id) == pending, "only a running job takes progress"
    job = store.claim_next("a", 30)
    store.update_progress(job.id, progress=40, message="scanning", stats={"blocks_done": 4}, from_block=1, to_block=9)
    store.update_progress(job.id, progress=30, message="reading", stats={"blocks_done": 9})
    now = store.get(job.id)
    assert (now.progress, now.message, now.stats) == (40, "reading", {"blocks_done": 9})
    assert (now.from_block, now.to_block) == (1, 9), "None keeps the range"
    assert store.finish(job.id, "completed", message="done", summary=SUMMARY, stats={"blocks_done": 9})
    done = store.get(job.id)
    assert (done.state, done.progress) == ("completed", 100)
    assert done.ended_at is not None
    assert not store.finish(job.id, "failed", message="late", error_code="X")
    store.update_progress(job.id, progress=10, message="late", stats={})
    assert store.request_cancel(job.id) == done
    store.release(job.id, "a")
    assert store.get(job.id) == done, "nothing changes a finished job"
    assert store.claim_next("b", 30) is None


def test_request_cancel_ends_a_pending_job_and_flags_a_running_one(store: JobStore) -> None:
    pending = store.create(new_job())
    cancelled = store.request_cancel(pending.id)
    assert (cancelled.state, cancelled.error_code) == ("cancelled", "JOB_CANCELLED")
    assert cancelled.ended_at is not None and cancelled.started_at is None
    assert store.claim_next("a", 30) is None, "a cancelled pending job never starts"

    job = running(store)
    flagged = store.request_cancel(job.id)
    assert (flagged.state, flagged.cancel_requested, flagged.message) == ("running", True, "Cancelling")
    assert store.heartbeat(job.id, "a", 30) is False, "the heartbeat tells the worker to stop"
    assert store.finish(job.id, "cancelled", message="Cancelled", error_code="JOB_CANCELLED", stats={"n": 1})
    assert store.get(job.id).stats == {"n": 1}
    assert store.request_cancel("no-such-job") is None


def test_events_replay_every_change_after_a_sequence(store: JobStore) -> None:
    job = running(store)
    store.update_progress(job.id, progress=20, message="scanning", stats={})
    store.finish(job.id, "failed", message="Failed", error_code="RPC_UNAVAILABLE", error_message="node down")
    events = store.events(job.id, 0)
    assert [seq for seq, _, _ in events] == [1, 2, 3, 4]
    assert [snap["state"] for _, _, snap in events] == ["pending", "running", "running", "failed"]
    assert events[-1][2] == store.get(job.id).snapshot()
    assert all(isinstance(t, float) for _, t, _ in events)
    assert [seq for seq, _, _ in store.events(job.id, 2)] == [3, 4]
    assert store.events(job.id, 4) == [] and store.events("no-such-job", 0) == []


# -- listing, deleting, retention --------------------------------------------------


def test_list_jobs_filters_newest_first_with_positions_skip_and_totals(store: JobStore) -> None:
    t = time.time()
    jobs = [store.create(new_job(t + n, job_type="reports_sync" if n % 2 else "blockchain_sync")) for n in range(7)]
    tied = [store.create(new_job(t + 10)) for _ in range(3)]  # same created_at: id breaks the tie
    store.request_cancel(jobs[0].id)
    newest_first = sorted(tied, key=lambda j: j.id, reverse=True) + jobs[::-1]
    expected = [j.id for j in newest_first]

    seen, position, pages = [], None, 0
    while True:
        page = store.list_jobs(state=None, job_type=None, page_size=3, after=position)
        assert page.total == 10
        seen += [j.id for j in page.jobs]
        pages += 1
        position = page.next_position
        if position is None:
            break
        assert position == (page.jobs[-1].created_at, page.jobs[-1].id)
    assert seen == expected and pages == 4

    everything = store.list_jobs(state=None, job_type=None, page_size=100)
    assert [j.id for j in everything.jobs] == expected and everything.next_position is None
    skipped = store.list_jobs(state=None, job_type=None, page_size=2, skip=3)
    assert [j.id for j in skipped.jobs] == expected[3:5] and skipped.total == 10
    after_skipped = store.list_jobs(state=None, job_type=None, page_size=2, after=skipped.next_position, skip=1)
    assert [j.id for j in after_skipped.jobs] == expected[6:8]

    reports = store.list_jobs(state=None, job_type="reports_sync", page_size=2)
    assert reports.total == 3 and [j.id for j in reports.jobs] == [jobs[5].id, jobs[3].id]
    cancelled = store.list_jobs(state="cancelled", job_type="blockchain_sync", page_size=5)
    assert cancelled.total == 1 and [j.id for j in cancelled.jobs] == [jobs[0].id]
    assert store.list_jobs(state="completed", job_type=None, page_size=5).total == 0
    theirs = store.create(dataclasses.replace(new_job(t + 20), principal="alice"))
    scoped = store.list_jobs(state=None, job_type=None, page_size=5, principal="alice")
    assert scoped.total == 1 and [j.id for j in scoped.jobs] == [theirs.id]
    assert store.list_jobs(state=None, job_type=None, page_size=5, principal="bob").total == 0


def test_delete_removes_the_job_with_its_events_and_results(store: JobStore) -> None:
    job = running(store)
    store.save_chunk(job.id, checkpoint={}, records=("proposals", [{"id": "1"}]))
    store.finish(job.id, "completed", message="done", summary=SUMMARY)
    assert store.delete(job.id) is True
    assert store.get(job.id) is None and store.events(job.id, 0) == []
    assert store.result_summary(job.id) is None and list(store.records(job.id, "proposals")) == []
    assert store.delete(job.id) is False


def test_purge_expired_removes_only_old_finished_jobs_and_old_request_ids(store: JobStore) -> None:
    done = running(store)
    store.finish(done.id, "completed", message="done", summary=SUMMARY)
    busy = running(store, owner="b")
    waiting = store.create(new_job(request_id="keep-me"))
    assert store.purge_expired(retention_s=3600, request_id_ttl_s=3600) == 0
    time.sleep(0.01)
    assert store.purge_expired(retention_s=0, request_id_ttl_s=3600) == 1
    assert store.get(done.id) is None
    assert store.get(waiting.id) is not None and store.get(busy.id) is not None
    assert store.create(new_job(request_id="keep-me")).id == waiting.id
    store.purge_expired(retention_s=3600, request_id_ttl_s=-1)
    assert store.create(new_job(request_id="keep-me")).id != waiting.id, "a forgotten key starts a new job"


# -- chunks, records, results ------------------------------------------------------


def test_chunks_touches_records_rewind_and_result(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_store, "RECORDS_PAGE", 3)  # records() reads in pages: cross a few
    job = running(store)
    created = {"block": 3, "tx": "0xab", "logIndex": 0}
    store.save_chunk(
        job.id,
        checkpoint={"scannedTo": 4},
        touched=[
            ("proposals", 1, 3, 1, created),
            ("proposals", 1, 4, 2, None),
            ("proposals", 2, 4, 0, None),  # a call's touch: no event
            ("reports", 7, 4, 1, None),
            ("reports", 7, 4, 0, None),  # the same entity and block again: one row, the events added up
        ],
    )
    assert store.touched(job.id, "proposals") == {1: created, 2: None}
    assert store.touched(job.id, "reports") == {7: None}
    assert store.touched_event_count(job.id) == 4, "a call's touch counts no event"
    assert store.touched_event_count(job.id, since=4) == 3
    assert store.get(job.id).checkpoint == {"scannedTo": 4}
    store.save_chunk(job.id, checkpoint={"scannedTo": 9}, touched=[("proposals", 3, 8, 5, None)])
    assert store.rewind(job.id, 4, {"scannedTo": 3}) is True
    assert store.touched(job.id, "proposals") == {1: created} and store.touched_event_count(job.id) == 1
    assert store.get(job.id).checkpoint == {"scannedTo": 3}

    rows = [{"id": str(n), "title": f"p{n}"} for n in range(8)]
    store.save_chunk(job.id, checkpoint={"read": 5}, records=("proposals", rows[:5]))
    store.save_chunk(job.id, checkpoint={"read": 8}, records=("proposals", rows[5:]))
    store.save_chunk(job.id, checkpoint={"read": 8}, records=("proposals", [{"id": "2", "title": "again"}]))
    order = [r["id"] for r in store.records(job.id, "proposals")]
    assert order == ["0", "1", "3", "4", "5", "6", "7", "2"], "a record saved again replaces the old one, at the end"
    assert [r["id"] for r in store.records(job.id, "proposals", 2)] == order[2:]
    assert [r["id"] for r in store.records(job.id, "proposals", 1, 5)] == order[1:6]
    assert list(store.records(job.id, "proposals", 6, 0)) == []
    assert list(store.records(job.id, "proposals", 20)) == []
    assert store.record_ids(job.id, "proposals") == {str(n) for n in range(8)}
    assert store.record_ids(job.id, "petitions") == set()

    assert store.result_summary(job.id) is None and store.last_completed_id("blockchain_sync") is None
    store.finish(job.id, "completed", message="done", summary=SUMMARY)
    assert store.touched(job.id, "proposals") == {}, "touches are working state, dropped at the end"
    assert len(list(store.records(job.id, "proposals"))) == 8, "a completed job keeps its records"
    assert store.result_summary(job.id) == SUMMARY
    assert store.last_completed_id("blockchain_sync") == job.id and store.last_completed_id("reports_sync") is None

    failed = running(store)
    store.save_chunk(failed.id, checkpoint={}, records=("reports", [{"id": "1"}]))
    store.finish(failed.id, "failed", message="Failed", error_code="X")
    assert list(store.records(failed.id, "reports")) == [] and store.result_summary(failed.id) is None


def test_migrations_are_applied_once_and_reopening_is_a_no_op(backend: Backend, store: JobStore) -> None:
    expected = [m.version for m in migrations("sqlite" if backend.name == "sqlite" else "postgres")]
    assert expected[:3] == [1, 2, 3], "the versions databases made before the migration files carry"
    assert expected == list(range(1, len(expected) + 1))

    assert backend.schema_versions() == expected
    job = store.create(new_job())
    again = backend.open()
    assert backend.schema_versions() == expected
    assert again.get(job.id) == job


def test_touches_saved_a_row_per_event_become_a_row_per_entity_and_block(
    backend: Backend, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 5: a store made before it keeps its jobs' touches, each entity and block once, with the
    number of events that named it (a row of log index -1 was a call: no event)."""
    dialect = "sqlite" if backend.name == "sqlite" else "postgres"
    before = tmp_path / "migrations"
    (before / dialect).mkdir(parents=True)
    for path in sorted((migrate.MIGRATIONS_DIR / dialect).glob("000[1-4]_*.sql")):
        shutil.copy(path, before / dialect / path.name)
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", before)
    old = backend.open()
    job = running(old)
    old.connector.write(
        lambda tx: tx.script(
            "INSERT INTO touched (job_id, kind, entity_id, block, log_index, created) VALUES "
            f"('{job.id}', 'proposals', 1, 3, 0, '{{\"blockNumber\": \"3\"}}'), ('{job.id}', 'proposals', 1, 3, 4, NULL),"
            f"('{job.id}', 'proposals', 1, 5, -1, NULL), ('{job.id}', 'proposals', 2, 5, 1, NULL),"
            f"('{job.id}', 'proposals', 2, 5, -1, NULL)"
        )
    )
    assert backend.schema_versions() == [1, 2, 3, 4]
    monkeypatch.undo()

    store = backend.open()
    assert backend.schema_versions() == [m.version for m in migrations(dialect)]
    assert store.touched(job.id, "proposals") == {1: {"blockNumber": "3"}, 2: None}
    assert store.touched_event_count(job.id) == 3 and store.touched_event_count(job.id, since=5) == 1
    store.save_chunk(job.id, checkpoint={}, touched=[("proposals", 1, 5, 2, None)])  # the block saved again
    assert store.touched_event_count(job.id, since=5) == 3


def test_replicas_opening_an_empty_schema_at_once_migrate_it_once(pg_schema: str) -> None:
    stores: list[JobStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        barrier.wait()
        try:
            stores.append(JobStore(PostgresConnector(PG_URL, schema=pg_schema, max_size=1)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert not errors and len(stores) == 6
        with psycopg.connect(PG_URL) as conn:
            query = sql.SQL("SELECT version FROM {}.schema_version").format(sql.Identifier(pg_schema))
            assert [v for (v,) in conn.execute(query)] == [m.version for m in migrations("postgres")]
    finally:
        for store in stores:
            store.close()


# -- a server process on PostgreSQL --------------------------------------------------


def _records(result: jobs_pb2.SyncResult) -> dict:
    return {kind: [MessageToDict(r) for r in getattr(result, kind)] for kind in ("proposals", "petitions", "reports")}


def _full_sync(stub: jobs_pb2_grpc.JobServiceStub) -> tuple[jobs_pb2.SyncResult, dict]:
    job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
    job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job
    result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    return result, _records(result)


def test_a_server_on_postgresql_syncs_the_same_result_as_on_sqlite(stack, devnet, pg_schema: str) -> None:
    reference, reference_records = _full_sync(stack.stub)
    db = f"{PG_URL}?schema={pg_schema}"
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db) as server:
        with grpc.insecure_channel(server.addr) as channel:
            result, records = _full_sync(jobs_pb2_grpc.JobServiceStub(channel))
    assert records == reference_records
    assert sum(len(rows) for rows in records.values()) > 0
    assert (result.from_block, result.to_block, result.to_block_hash, result.chain_id, result.events_count) == (
        reference.from_block,
        reference.to_block,
        reference.to_block_hash,
        reference.chain_id,
        reference.events_count,
    )
    with psycopg.connect(PG_URL) as conn:
        query = sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state").format(sql.Identifier(pg_schema))
        assert dict(conn.execute(query).fetchall()) == {"completed": 1}, "the job lived in the schema it was given"


def test_count_by_state_sees_the_jobs_of_every_store_on_the_database(backend: Backend) -> None:
    """The jobs-per-state gauge of /metrics: with PostgreSQL a replica counts the other replicas' jobs too."""
    from server.metrics import JobsCollector

    here, there = backend.open(), backend.open()
    assert here.count_by_state() == {}
    running(there, owner="replica-2")
    done = running(there, owner="replica-2")
    assert there.finish(done.id, "completed", message="done", summary=SUMMARY, owner="replica-2")
    there.create(new_job())
    assert here.count_by_state() == {"running": 1, "pending": 1, "completed": 1}
    samples = {
        (s.name, s.labels.get("state")): s.value
        for family in JobsCollector(here.count_by_state, lambda: (0, 2)).collect()
        for s in family.samples
    }
    assert samples[("chainsync_jobs", "running")] == 1
    assert samples[("chainsync_jobs", "failed")] == 0
    assert samples[("chainsync_queue_depth", None)] == 1
    assert samples[("chainsync_job_store_up", None)] == 1
    assert samples[("chainsync_workers", None)] == 2


def test_a_completed_job_keeps_its_reorg_window_for_the_sync_that_continues_from_it(store: JobStore) -> None:
    """Hashes of the window's blocks and the touches in them outlive the job; what it continued from
    is inherited for the blocks it did not scan; a job that fails keeps nothing (docs/reorgs.md)."""
    first = running(store)
    store.save_window(first.id, {8: "0x08", 9: "0x09", 10: "0x0a"}, owner=None)
    store.save_chunk(first.id, checkpoint={}, touched=[("reports", 1, 5, 1, None), ("reports", 2, 9, 1, None)])
    summary = dataclasses.replace(SUMMARY, from_block=1, to_block=10, window_from=8)
    store.finish(first.id, "completed", message="done", summary=summary)
    assert store.window(first.id) == {8: "0x08", 9: "0x09", 10: "0x0a"}
    assert store.kept_touches(first.id, "reports", 0) == {2}, "only the window's touches are kept"

    second = running(store)
    store.rewind(second.id, 12, checkpoint={}, owner=None)
    store.save_window(second.id, {9: "0x09", 10: "0x0a", 11: "0x0b", 12: "0x0c"}, owner=None)
    store.save_chunk(second.id, checkpoint={}, touched=[("reports", 3, 11, 1, None), ("reports", 4, 12, 1, None)])
    store.rewind(second.id, 12, checkpoint={}, owner=None)  # the chain changed at 12
    assert store.window(second.id) == {9: "0x09", 10: "0x0a", 11: "0x0b"}
    assert store.touched(second.id, "reports") == {3: None}
    continued = dataclasses.replace(summary, from_block=11, to_block=11, window_from=9, after_job_id=first.id)
    store.finish(second.id, "completed", message="done", summary=continued)
    assert store.kept_touches(second.id, "reports", 9) == {2, 3}, "inherits the touches of blocks it did not scan"
    assert store.last_completed_id("blockchain_sync") == second.id
    assert store.last_completed_id("blockchain_sync", principal="someone-else") is None

    failed = running(store)
    store.save_window(failed.id, {1: "0x01"}, owner=None)
    store.finish(failed.id, "failed", message="Failed", error_code="X")
    assert store.window(failed.id) == {}
