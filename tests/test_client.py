"""The Python clients: GrpcClient and RestClient, one API, against real processes.

Most tests run once per client over the session stack. The "slow" server
(a full sync lasts several seconds) wants a bearer token, for the watch,
cancel, timeout and auth cases.
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
    GrpcClient,
    InvalidArgument,
    Job,
    JobCancelled,
    JobFailed,
    JobNotCompleted,
    JobNotFound,
    RestClient,
    ServiceUnavailable,
    Unauthenticated,
    WaitTimeout,
)

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import Service, _spawn, free_port, rest_bridge, stop_process, wait_for_port
from tests.stack import slow_server, wait_until

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
    assert result.totals == {kind: len(getattr(result, kind)) for kind in ("proposals", "petitions", "reports")}
    assert result.proposals and result.next_page_token is None
    assert result.completed_at == done.ended_at


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

    job = slow_client.start_sync(full=True)
    wait_until(lambda: slow_client.status(job.id).stats.blocks_done > 0, 30)
    with pytest.raises(JobNotCompleted) as err:
        slow_client.result(job.id)
    assert err.value.state == "running"
    with pytest.raises(WaitTimeout):
        slow_client.wait(job.id, timeout=0.3)
    slow_client.cancel(job.id)
    with pytest.raises(JobCancelled) as cancelled:
        slow_client.wait(job.id, timeout=30)
    assert cancelled.value.job.status == "cancelled" and cancelled.value.code == "JOB_CANCELLED"


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
        }
        watch_through_a_restart(c, lambda: _start_on(port, ["serve"], env), kill_after=3)


def test_job_to_json_round_trips(client: Client, stack) -> None:
    job = client.start_sync(blocks_back=3)
    done = client.wait(job.id, timeout=60)
    assert Job.from_json(done.to_json()) == done
    assert replace(done, progress=1) != done
