"""The Python clients: GrpcClient and RestClient, one API, against real processes.

Most tests run once per client over the session stack. The "slow" server
(a full sync lasts several seconds) wants a bearer token, for the watch,
cancel, timeout and auth cases. The SyncView tests switch branches on a devnet
of their own (evm_snapshot / evm_revert, as tests/test_reorgs.py does) and
check the view against the getters read through web3.py.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from chainsync_client import (
    ChainsyncError,
    Client,
    Cursor,
    CursorNotCompleted,
    CursorNotFound,
    GrpcClient,
    InvalidArgument,
    Job,
    JobCancelled,
    JobFailed,
    JobNotCompleted,
    JobNotFound,
    JobStats,
    ReorgTooDeep,
    RestClient,
    ServiceUnavailable,
    SyncResult,
    SyncView,
    Unauthenticated,
    WaitTimeout,
)

from devnet.command import open_devnet
from tests.fault_proxy import FaultProxy, Faults
from tests.processes import REPO, Service, _spawn, free_port, grpc_server, rest_bridge, stop_process, wait_for_port
from tests.stack import slow_server, wait_until
from tests.test_reorgs import Chain, assert_view_is_the_chain

TOKEN = "client-test-token"


def make_client(kind: str, grpc_addr: str, http_url: str, token: str | None = None) -> Client:
    return GrpcClient(grpc_addr, token=token) if kind == "grpc" else RestClient(http_url, token=token)


@pytest.fixture(params=["grpc", "rest"])
def client(request, stack) -> Iterator[Client]:
    with make_client(request.param, stack.server.addr, stack.bridge.url) as c:
        yield c


@pytest.fixture(scope="module")
def slow(devnet, tmp_path_factory) -> Iterator[tuple[Service, Service]]:
    db = tmp_path_factory.mktemp("client-slow") / "jobs.sqlite3"
    with slow_server(devnet, db, CHAINSYNC_API_TOKEN=TOKEN) as server, rest_bridge(server.addr) as bridge:
        yield server, bridge


@pytest.fixture(params=["grpc", "rest"])
def slow_client(request, slow) -> Iterator[Client]:
    with make_client(request.param, slow[0].addr, slow[1].url, TOKEN) as c:
        yield c


KINDS = ("proposals", "petitions", "reports")


def contiguous(sequences: list[int]) -> bool:
    return sequences == list(range(sequences[0], sequences[0] + len(sequences)))


def test_start_watch_wait_and_result(client: Client) -> None:
    job = client.start_sync(full=True)
    assert job.status in ("pending", "running") and not job.done
    events = list(client.watch(job.id, timeout=60))
    assert contiguous([e.sequence for e in events])
    assert [e.job.progress for e in events] == sorted(e.job.progress for e in events)
    assert events[-1].job.status == "completed" and events[-1].job.progress == 100 and events[-1].job.done
    done = client.wait(job.id, timeout=30)
    assert done == events[-1].job
    assert done.stats.blocks_done == done.stats.blocks_total == done.to_block - done.from_block + 1
    result = client.result(job.id)
    assert (result.from_block, result.to_block) == (done.from_block, done.to_block)
    assert result.totals == {kind: len(getattr(result, kind)) for kind in KINDS}
    assert result.proposals and result.next_page_token is None
    assert result.completed_at == done.ended_at
    assert result.cursor == Cursor(job.id, result.to_block, result.to_block_hash)
    assert result.after is None and result.reorg is None and result.dropped == {kind: [] for kind in KINDS}
    created = [r["created"]["blockNumber"] for kind in KINDS for r in getattr(result, kind) if r["created"]]
    assert created and all(type(n) is int and done.from_block <= n <= done.to_block for n in created)
    assert all(type(getattr(done.stats, name)) is int for name in ("blocks_done", "reorgs", "content_cids"))


def test_both_clients_see_exactly_the_same_job_and_records(stack) -> None:
    with GrpcClient(stack.server.addr) as grpc_client, RestClient(stack.bridge.url) as rest_client:
        job = grpc_client.start_sync(blocks_back=800)
        grpc_client.wait(job.id, timeout=60)
        assert grpc_client.status(job.id) == rest_client.status(job.id)
        by_grpc, by_rest = grpc_client.result(job.id), rest_client.result(job.id)
        assert by_grpc == by_rest
        streamed = list(grpc_client.iter_records(job.id, page_size=9))
        assert streamed == list(rest_client.iter_records(job.id, page_size=9))
        for kind in ("proposals", "petitions", "reports"):
            assert [r for k, r in streamed if k == kind] == getattr(by_grpc, kind)
        pages, token = [], None
        for _ in range(100):
            page = rest_client.result(job.id, page_size=10, page_token=token)
            pages.append(page)
            token = page.next_page_token
            if not token:
                break
        assert len(pages) > 1 and [r for p in pages for r in p.reports] == by_grpc.reports


def test_list_cancel_and_delete(client: Client) -> None:
    mine = [client.start_sync(blocks_back=2, type="reports_sync").id for _ in range(3)]
    for job_id in mine:
        client.wait(job_id, timeout=60)
    first = client.list_jobs(type="reports_sync", page_size=2)
    assert [j.id for j in first.jobs] == mine[::-1][:2] and first.total >= 3 and first.next_page_token
    second = client.list_jobs(type="reports_sync", page_size=2, page_token=first.next_page_token)
    assert second.jobs[0].id == mine[0]
    assert client.list_jobs(type="reports_sync", page_size=2, page=2).jobs == second.jobs
    assert all(j.status == "completed" for j in client.list_jobs(status="completed").jobs)

    assert client.cancel(mine[0]).status == "completed", "a finished job stays as it is"
    client.delete(mine[0])
    with pytest.raises(JobNotFound) as err:
        client.status(mine[0])
    assert err.value.code == "JOB_NOT_FOUND" and err.value.details["jobId"] == mine[0]


def test_typed_errors(client: Client) -> None:
    unknown = str(uuid.uuid4())
    for call in (
        client.status,
        client.result,
        client.cancel,
        client.delete,
        lambda i: list(client.watch(i)),
        lambda i: client.wait(i, timeout=5),
    ):
        with pytest.raises(JobNotFound):
            call(unknown)
    with pytest.raises(InvalidArgument) as err:
        client.start_sync(blocks_back=0)
    assert err.value.field == "blocksBack" and err.value.code in ("INVALID_BLOCKS_BACK", "INVALID_ARGUMENT")
    with pytest.raises(InvalidArgument) as err:
        client.start_sync(from_block=10, to_block=5)
    assert err.value.field == "fromBlock" and err.value.code == "INVALID_RANGE"
    with pytest.raises(InvalidArgument) as err:
        client.status("not-a-job-id")
    assert err.value.code == "INVALID_JOB_ID" and err.value.field == "jobId"
    with pytest.raises(InvalidArgument) as err:
        client.list_jobs(status="done")
    assert err.value.field == "status"
    with pytest.raises(InvalidArgument) as err:
        client.list_jobs(page_size=1000)
    assert err.value.field in ("limit", "pageSize")
    assert isinstance(err.value, ChainsyncError)


def test_a_cursor_must_name_a_completed_job_of_the_same_type(client: Client) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(CursorNotFound) as missing:
        client.start_sync(after=unknown)
    assert missing.value.code == "CURSOR_NOT_FOUND" and missing.value.field == "after"
    assert isinstance(missing.value, JobNotFound), "a handler of JobNotFound still catches it"
    reports = client.start_sync(blocks_back=3, type="reports_sync")
    client.wait(reports.id, timeout=60)
    with pytest.raises(InvalidArgument) as other_type:
        client.start_sync(after=reports.id)
    assert other_type.value.field == "after"
    continued = client.start_sync(type="reports_sync", after=Cursor(reports.id, 0, ""))  # a Cursor works as well
    client.wait(continued.id, timeout=60)
    assert client.result(continued.id).after == reports.id


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_unreachable_service_is_service_unavailable(kind: str) -> None:
    port = free_port()
    with make_client(kind, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") as c:
        for call in (
            lambda: c.status(str(uuid.uuid4())),
            lambda: c.start_sync(blocks_back=5),
            lambda: list(c.watch(str(uuid.uuid4()))),
            lambda: c.list_jobs(),
        ):
            with pytest.raises(ServiceUnavailable) as err:
                call()
            assert "unreachable" in err.value.message and str(port) in err.value.message


def test_the_token_is_needed_and_sent(slow, slow_client: Client) -> None:
    kind = "grpc" if isinstance(slow_client, GrpcClient) else "rest"
    with make_client(kind, slow[0].addr, slow[1].url, token="") as anonymous:
        with pytest.raises(Unauthenticated) as err:
            anonymous.list_jobs()
        assert err.value.code == "MISSING_TOKEN"
    with make_client(kind, slow[0].addr, slow[1].url, token="wrong") as wrong:
        with pytest.raises(Unauthenticated):
            wrong.start_sync(blocks_back=5)
    assert slow_client.list_jobs().total >= 0


def test_watch_resumes_after_a_sequence_without_a_gap(slow_client: Client) -> None:
    job = slow_client.start_sync(full=True)
    first: list = []
    for event in slow_client.watch(job.id, timeout=60):
        first.append(event)
        if len(first) == 3:
            break
    assert not first[-1].job.done, "the slow job should still be going"
    rest: list = []
    for event in slow_client.watch(job.id, after_sequence=first[-1].sequence, timeout=60):
        rest.append(event)
        if len(rest) == 2:
            slow_client.cancel(job.id)  # no need to wait for the whole slow sync
    assert contiguous([e.sequence for e in first + rest])
    assert rest[-1].job.status == "cancelled"


def test_wait_raises_failed_cancelled_and_timeout(slow_client: Client) -> None:
    timed_out = slow_client.start_sync(full=True, timeout_seconds=1)
    with pytest.raises(JobFailed) as failed:
        slow_client.wait(timed_out.id, timeout=60)
    assert failed.value.code == "JOB_TIMEOUT" and failed.value.job.status == "failed"
    assert "timeout" in failed.value.message
    with pytest.raises(JobFailed) as no_result:  # the server's JOB_FAILED, typed as wait types it
        slow_client.result(timed_out.id)
    assert no_result.value.code == "JOB_TIMEOUT" and no_result.value.job is None
    assert no_result.value.details["state"] == "failed" and no_result.value.details["jobId"] == timed_out.id

    job = slow_client.start_sync(full=True)
    wait_until(lambda: slow_client.status(job.id).stats.blocks_done > 0, 30)
    with pytest.raises(JobNotCompleted) as err:
        slow_client.result(job.id)
    assert err.value.state == "running"
    with pytest.raises(WaitTimeout):
        slow_client.wait(job.id, timeout=0.3)
    with pytest.raises(CursorNotCompleted) as not_yet:
        slow_client.start_sync(after=job.id)
    assert not_yet.value.field == "after" and not_yet.value.state in ("pending", "running")
    slow_client.cancel(job.id)
    with pytest.raises(JobCancelled) as cancelled:
        slow_client.wait(job.id, timeout=30)
    assert cancelled.value.job.status == "cancelled" and cancelled.value.code == "JOB_CANCELLED"
    with pytest.raises(JobCancelled) as no_result:
        slow_client.result(job.id)
    assert no_result.value.code == "JOB_CANCELLED" and no_result.value.details["state"] == "cancelled"


def _start_on(port: int, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    proc = _spawn(args, env)
    wait_for_port(port, proc, f"chainsync {args[0]}")
    return proc


def watch_through_a_restart(client: Client, start: Callable[[], subprocess.Popen], kill_after: int) -> list:
    """Starts the process, a full sync, and watches it; after ``kill_after`` events kills the process (SIGKILL)
    and starts it again on the same port. Returns every event the watch gave."""
    proc = start()
    try:
        job = client.start_sync(full=True)
        events = []
        for event in client.watch(job.id, timeout=120):
            events.append(event)
            if len(events) == kill_after:
                assert not event.job.done, "the job should still be going"
                proc.kill()
                proc.wait(timeout=10)
                proc = start()
        assert len(events) > kill_after and events[-1].job.status == "completed", events[-1].job
        assert contiguous([e.sequence for e in events]), [e.sequence for e in events]
        return events
    finally:
        stop_process(proc)


def test_rest_watch_survives_a_bridge_restart(slow) -> None:
    """The bridge dies mid-stream; a new one comes up on the same port; the watch resumes with Last-Event-ID."""
    port = free_port()
    env = {"CHAINSYNC_GRPC_ADDR": slow[0].addr, "CHAINSYNC_HTTP_ADDR": f"127.0.0.1:{port}"}
    with RestClient(f"http://127.0.0.1:{port}", token=TOKEN) as c:
        watch_through_a_restart(c, lambda: _start_on(port, ["bridge"], env), kill_after=2)


def test_grpc_watch_survives_a_server_restart(devnet, tmp_path) -> None:
    """The server is killed mid-job and started again on the same port and store: the job resumes from its
    checkpoint and the watch picks up after its last event."""
    port = free_port()
    # What tests.stack.slow_server does, on a port and store that stay the same across the restart.
    with FaultProxy(devnet.url, Faults(delay_s=0.025)) as proxy, GrpcClient(f"127.0.0.1:{port}") as c:
        env = {
            "CHAINSYNC_RPC_URL": proxy.url,
            "CHAINSYNC_DEPLOYMENT": str(devnet.deployment_path),
            "CHAINSYNC_DB": str(tmp_path / "jobs.sqlite3"),
            "CHAINSYNC_GRPC_ADDR": f"127.0.0.1:{port}",
            "CHAINSYNC_LOG_CHUNK": "20",
            "CHAINSYNC_RPC_CONCURRENCY": "1",
        }
        watch_through_a_restart(c, lambda: _start_on(port, ["serve"], env), kill_after=3)


def test_job_to_json_round_trips_and_is_the_bridge_job_object(client: Client, stack) -> None:
    job = client.start_sync(blocks_back=3)
    done = client.wait(job.id, timeout=60)
    assert Job.from_json(done.to_json()) == done
    assert replace(done, progress=1) != done
    assert done.to_json() == stack.http.get(f"/api/blockchain/sync/status/{job.id}").json()["job"]


def test_the_rest_models_read_what_an_older_bridge_sent() -> None:
    """Numbers as decimal strings, stats without the newer fields, a result without cursor fields."""
    old = {
        "id": "j",
        "type": "blockchain_sync",
        "status": "completed",
        "progress": 100,
        "message": "",
        "createdAt": "2026-11-30T12:53:26.847123Z",
        "fromBlock": "0",
        "toBlock": "12",
        "stats": {"blocksTotal": "13", "blocksDone": "13", "blocksPerSecond": 2.5},
    }
    job = Job.from_json(old)
    assert (job.from_block, job.to_block) == (0, 12)
    assert job.stats == JobStats(blocks_total=13, blocks_done=13, blocks_per_second=2.5)
    assert job.to_json()["createdAt"] == "2026-11-30T12:53:26.847Z"
    record = {"id": "1", "created": {"blockNumber": "7", "transactionHash": "0x", "logIndex": 0}}
    body = {
        "result": {
            "proposals": [record],
            "petitions": [],
            "reports": [],
            "fromBlock": "0",
            "toBlock": "12",
            "toBlockHash": "0xab",
            "chainId": "31337",
            "processingTime": 5,
        }
    }
    result = SyncResult.from_json("j", body)
    assert result.proposals[0]["created"]["blockNumber"] == 7 and result.chain_id == 31337
    assert result.cursor == Cursor("j", 12, "0xab") and result.after is None and result.reorg is None
    assert result.dropped == {kind: [] for kind in KINDS}


def _result(job_id: str, after: str | None, proposals: list[str], dropped: tuple[str, ...] = ()) -> SyncResult:
    return SyncResult(
        job_id=job_id,
        proposals=[{"id": i, "job": job_id} for i in proposals],
        petitions=[],
        reports=[],
        from_block=1,
        to_block=10,
        to_block_hash="0x",
        chain_id=1,
        events_count=0,
        processing_time_ms=1,
        completed_at=None,
        totals={"proposals": len(proposals), "petitions": 0, "reports": 0},
        cursor=Cursor(job_id, 10, "0x"),
        after=after,
        reorg=None,
        dropped={"proposals": list(dropped), "petitions": [], "reports": []},
    )


def test_a_sync_view_upserts_deletes_replaces_and_refuses_a_result_out_of_order() -> None:
    view = SyncView()
    view.apply(_result("a", None, ["1", "2", "3"]))
    view.apply(_result("b", "a", ["2", "4"], dropped=["3"]))
    assert {i: r["job"] for i, r in view.records["proposals"].items()} == {"1": "a", "2": "b", "4": "b"}
    assert view.cursor == Cursor("b", 10, "0x") and view.to_block == 10
    with pytest.raises(ValueError, match="continues from job a"):
        view.apply(_result("c", "a", ["5"]))  # b's changes would be lost
    page = replace(_result("d", "b", ["5"]), totals={"proposals": 2, "petitions": 0, "reports": 0})
    with pytest.raises(ValueError, match="page"):
        view.apply(page)
    view.apply(_result("e", None, ["1"]))  # a full sync replaces the view
    assert list(view.records["proposals"]) == ["1"] and view.cursor.job_id == "e"


@pytest.fixture
def own_stack(tmp_path) -> Iterator[tuple[object, Service, Service]]:
    """A devnet of this test's own (its branches are switched), a server with an 8-block reorg window, a bridge."""
    with open_devnet(REPO / ".devnet", "demo") as devnet:
        db = tmp_path / "jobs.sqlite3"
        with grpc_server(
            rpc_url=devnet.url,
            deployment_path=devnet.deployment_path,
            db=db,
            extra_env={"CHAINSYNC_REORG_WINDOW": "8"},
        ) as server:
            with rest_bridge(server.addr) as bridge:
                yield devnet, server, bridge


def test_sync_views_across_reorgs_equal_the_chain(own_stack) -> None:
    """Two consumers, one over REST and one over gRPC, each with its own view and cursor: a full sync, an
    incremental, a reorg within the window, then one deeper than it (REORG_TOO_DEEP: a full sync replaces)."""
    devnet, server, bridge = own_stack
    chain = Chain(devnet)
    with RestClient(bridge.url) as rest, GrpcClient(server.addr) as grpc_client:
        views = {rest: SyncView(), grpc_client: SyncView()}
        for client, view in views.items():
            assert view.sync(client, timeout=120).after is None, "an empty view starts from a full sync"
            assert_view_is_the_chain(view, devnet)

        fork, snapshot = chain.head() + 1, chain.snapshot()
        chain.create_proposal("old-branch")
        chain.flip(97)
        new_id = str(devnet.expected.counts["proposals"] + 1)
        for client, view in views.items():
            before = view.cursor
            old = view.sync(client, timeout=120)
            assert old.after == before.job_id and {p["id"] for p in old.proposals} == {new_id, "97"}
            assert new_id in view.records["proposals"]

        chain.revert(snapshot)
        chain.flip(96)
        chain.mine(3)
        for client, view in views.items():
            new = view.sync(client, timeout=120)
            assert new.reorg is not None and new.reorg.fork_block == fork
            assert new.dropped["proposals"] == [new_id] and new_id not in view.records["proposals"]
            assert_view_is_the_chain(view, devnet)
        assert views[rest].records == views[grpc_client].records

        snapshot = chain.snapshot()
        chain.flip(14)
        chain.mine(19)
        for client, view in views.items():
            view.sync(client, timeout=120)
        chain.revert(snapshot)
        chain.mine(25)
        too_deep = rest.start_sync(after=views[rest].cursor)
        with pytest.raises(ReorgTooDeep) as err:
            rest.wait(too_deep.id, timeout=120)
        assert err.value.code == "REORG_TOO_DEEP" and "full sync" in err.value.message
        with pytest.raises(ReorgTooDeep):
            rest.result(too_deep.id)
        for client, view in views.items():
            replaced = view.sync(client, timeout=120)  # fails with REORG_TOO_DEEP again, then a full sync
            assert replaced.after is None
            assert_view_is_the_chain(view, devnet)
