"""What public RPC providers do, through a real HTTP proxy in front of anvil.

Each fault ends either in exactly the records of a clean run, or in a clear
failure that names the endpoint: never in an empty or partial result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf.json_format import MessageToDict

from tests.fault_proxy import PROVIDERS, FaultProxy, Faults
from tests.processes import free_port, grpc_server
from tests.stack import TERMINAL, wait_for_state


def full_sync(addr: str, timeout_s: float = 120) -> tuple[jobs_pb2.Job, dict | None]:
    with grpc.insecure_channel(addr) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
        job = wait_for_state(stub, job_id, TERMINAL, timeout_s)
        if job.state != jobs_pb2.JOB_STATE_COMPLETED:
            return job, None
        result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
        return job, {k: [MessageToDict(r) for r in getattr(result, k)] for k in ("proposals", "petitions", "reports")}


@pytest.fixture(scope="module")
def reference(stack) -> dict:
    """The records of a full sync straight from anvil, no proxy."""
    job, records = full_sync(stack.server.addr)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED
    return records


def through_proxy(devnet, tmp_path, faults: Faults, **env: str) -> Iterator[tuple[FaultProxy, str]]:
    """Yields once: (the proxy, the address of a server whose RPC URL is the proxy)."""
    with FaultProxy(devnet.url, faults) as proxy:
        with grpc_server(
            rpc_url=env.pop("rpc_url", proxy.url),
            deployment_path=devnet.deployment_path,
            db=tmp_path / "jobs.db",
            extra_env={"CHAINSYNC_RPC_BUDGET": "20", **env},
        ) as server:
            yield proxy, server.addr


@pytest.mark.parametrize("provider", PROVIDERS)
def test_range_caps_of_each_provider_are_split_and_the_result_is_exact(devnet, tmp_path, reference, provider) -> None:
    faults = Faults(provider=provider, max_range=300)
    for proxy, addr in through_proxy(devnet, tmp_path, faults, CHAINSYNC_LOG_CHUNK="2000"):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        assert proxy.refused > 0 and job.stats.range_splits > 0
        assert records == reference


@pytest.mark.parametrize("provider", ["infura", "alchemy", "reth", "geth"])
def test_result_size_caps_are_split_and_the_result_is_exact(devnet, tmp_path, reference, provider) -> None:
    for proxy, addr in through_proxy(devnet, tmp_path, Faults(provider=provider, max_results=150)):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        assert proxy.refused > 0
        assert records == reference


@pytest.mark.parametrize(
    "faults",
    [
        Faults(status=429, rate=0.3),
        Faults(status=503, rate=0.3),
        Faults(drop=True, rate=0.2),
        Faults(corrupt=True, rate=0.2),
        Faults(strip_log_field="blockNumber", rate=0.3),
        Faults(delay_s=0.01),
    ],
    ids=["429", "503", "drop", "corrupt", "log-without-blockNumber", "delay"],
)
def test_transient_faults_are_retried_and_the_result_is_exact(devnet, tmp_path, reference, faults) -> None:
    for proxy, addr in through_proxy(devnet, tmp_path, faults, CHAINSYNC_LOG_CHUNK="200"):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        assert faults.delay_s or proxy.faulted > 0
        assert records == reference


def test_a_node_that_keeps_failing_fails_the_job_naming_endpoint_error_and_tries(devnet, tmp_path) -> None:
    for proxy, addr in through_proxy(devnet, tmp_path, Faults(status=503), CHAINSYNC_RPC_BUDGET="2"):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_FAILED and records is None
        assert job.error.code == "RPC_UNAVAILABLE"
        assert proxy.url.rsplit("/", 1)[0] in job.error.message
        assert "HTTP 503" in job.error.message and "tries" in job.error.message


def test_logs_that_keep_lacking_a_field_fail_the_job_naming_the_field(devnet, tmp_path) -> None:
    """An eth_getLogs answer whose logs lack a field the scan reads is malformed: fetched again, and when the
    node keeps sending it, the job fails saying which field of which log, never with those logs skipped."""
    faults = Faults(strip_log_field="transactionHash")
    for proxy, addr in through_proxy(devnet, tmp_path, faults, CHAINSYNC_RPC_BUDGET="2"):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_FAILED and records is None
        assert job.error.code == "RPC_UNAVAILABLE"
        assert "missing required field `transactionHash`" in job.error.message
        assert "$.result[0]" in job.error.message
        assert proxy.faulted > 1, "fetched again before giving up"


def test_failover_to_the_next_url_when_the_first_is_down(devnet, tmp_path, reference) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    for proxy, addr in through_proxy(devnet, tmp_path, Faults(), rpc_url=f"{closed},{devnet.url}"):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        assert records == reference
        assert proxy.requests == 0


def test_an_answer_too_large_to_hold_is_dropped_and_its_range_split(devnet) -> None:
    """The sync reads at most max_logs_bytes of one eth_getLogs answer; a larger one is split, not held."""
    from server.engine.contracts import entity_kinds, load_deployment
    from server.engine.scan import Log, log_touches
    from server.engine.stats import SyncStats
    from server.engine.sync import SyncEngine, SyncOptions
    from server.transport.rpc import JsonRpc

    with JsonRpc([devnet.url]) as rpc:
        options = SyncOptions(log_chunk_blocks=100_000, max_logs_bytes=64 * 1024, silent_changes="off")
        engine = SyncEngine(rpc, load_deployment(devnet.deployment_path), entity_kinds(), options)
        stats = SyncStats()
        addresses = [devnet.deployment[c] for c in ("Proposals", "Petitions", "Reports")]
        by_address = {devnet.deployment[k.contract].lower(): k for k in engine.kinds.values()}
        touches, events = engine.scan._touches(1, devnet.expected.head_block, addresses, by_address, stats, 1, 0)
        whole = rpc.call(
            "eth_getLogs",
            [{"fromBlock": "0x1", "toBlock": hex(devnet.expected.head_block), "address": addresses}],
            result_type=list[Log],
        )
        assert stats.range_splits > 0 and engine.scan.sizer.size < 100_000, "the answer was too large: split"
        assert (touches, events) == log_touches(whole, by_address), "every event, in order, from the smaller requests"
        assert touches and len(whole) >= sum(t.events for t in touches) == events, "one touch per entity and block"
        engine.close()


def test_a_node_that_cannot_read_state_at_a_block_hash_is_read_at_the_number(devnet, tmp_path, reference) -> None:
    """A node without EIP-1898 refuses {"blockHash": ...} as a block parameter: the job reads toBlock by number
    instead (after its window, as it does with confirmations) and its records are exact."""
    for proxy, addr in through_proxy(devnet, tmp_path, Faults(no_block_hash=True)):
        job, records = full_sync(addr)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        assert records == reference
        assert proxy.refused > 0, "the job asked at the hash first"


def test_a_stoppable_jobs_requests_run_in_kept_daemon_threads(devnet) -> None:
    """A job's requests run in threads of the endpoints' own, so that a stop need not wait for a node
    (test_jobs.py: a node that never answers). One after another, they reuse one thread; the threads are
    daemons, so one left waiting never holds up the process's exit; closing the endpoints ends them."""
    from server.stopping import StopToken
    from server.transport.endpoints import Endpoints
    from server.transport.rpc import JsonRpc

    def request_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "chainsync-rpc-request"]

    before = set(request_threads())
    endpoints = Endpoints()
    with JsonRpc([devnet.url], stop=StopToken(), endpoints=endpoints) as rpc:
        heads = {int(rpc.call("eth_blockNumber", []), 16) for _ in range(20)}
    assert len(heads) == 1, heads
    made = [t for t in request_threads() if t not in before]
    assert len(made) == 1 and made[0].daemon, made
    endpoints.close()
    made[0].join(timeout=5)
    assert not made[0].is_alive(), "closing the endpoints ends their threads"


def test_an_idle_request_thread_keeps_nothing_of_its_last_answer() -> None:
    """Up to 256 request threads wait for work between requests: one that kept its last answer (an
    eth_getLogs answer is up to 16 MiB parsed) would hold it while it waits, and the server's memory would
    grow with its idle threads (the 203,345-event sync's peak RSS: 400 MB with them, 250 MB without)."""
    import gc
    import weakref

    from server.transport.endpoints import RequestThreads

    class Answer:
        pass

    threads = RequestThreads(4)
    try:
        answer = threads.submit(Answer).result(timeout=5)
        gone = weakref.ref(answer)
        del answer
        deadline = time.monotonic() + 5
        while gone() is not None and time.monotonic() < deadline:  # the thread lets go as it turns idle
            gc.collect()
            time.sleep(0.01)
        assert gone() is None, "an idle request thread still refers to the answer it handed over"
    finally:
        threads.close()
