"""Clients that go away mid-stream: a gRPC WatchJob cancelled by the client, an SSE client that
closes its HTTP connection to the bridge. The job completes; server and bridge keep serving and
hold no more threads or open files than before."""

from __future__ import annotations

import os
import time

import grpc
import httpx
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import grpc_server, rest_bridge
from tests.reliability import assert_no_duplicates, records, reference_records, scale, thread_count
from tests.stack import TERMINAL, wait_for_state

ROUNDS = scale(4, 40)
STREAMS = 8  # of each kind, open at once in every round


def open_files(pid: int, store: str | None = None) -> int:
    """Open descriptors, the store's own files (``store`` and its -wal and -shm) left out: SQLite keeps a
    connection per thread that used the store, so a job whose work lands on a pool thread new to the store
    opens it once more; threads are counted apart."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed meanwhile
            continue
    return sum(1 for t in targets if store is None or not t.startswith(store))


def usage(pid: int, store: str | None = None) -> tuple[int, int]:
    return thread_count(pid), open_files(pid, store)


def settle(
    pid: int, baseline: tuple[int, int], slack: int, store: str | None = None, timeout_s: float = 10
) -> tuple[int, int]:
    """The process's (threads, open files) once back within slack of baseline, or the last seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = usage(pid, store)
        if all(n <= b + slack for n, b in zip(now, baseline)) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def disconnect_round(stub, http: httpx.Client, job_id: str) -> None:
    calls, streams = [], []
    try:
        for _ in range(STREAMS):
            call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=60)
            next(call)  # the first event arrived: the stream is live
            calls.append(call)
        for _ in range(STREAMS):
            cm = http.stream("GET", f"/api/blockchain/sync/events/{job_id}")
            response = cm.__enter__()
            streams.append(cm)
            assert response.status_code == 200
            assert _first_data(response), "the first event arrived: the stream is live"
    finally:
        for call in calls:
            call.cancel()  # the client goes away mid-stream
        for cm in streams:
            cm.__exit__(None, None, None)  # closes the HTTP connection


def _first_data(response: httpx.Response, max_lines: int = 20) -> bool:
    for i, line in enumerate(response.iter_lines()):
        if line.startswith("data:"):
            return True
        if i >= max_lines:
            return False
    return False


def test_clients_that_disconnect_mid_stream_leave_the_job_and_the_services_intact(devnet, stack, tmp_path) -> None:
    reference = reference_records(stack.stub, is_full_sync=True)
    env = {"CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_RPC_CONCURRENCY": "1"}  # one request at a time: a job of seconds
    store = str(tmp_path / "jobs.db")
    with (
        FaultProxy(devnet.url, Faults(delay_s=0.03)) as proxy,
        grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=store, extra_env=env) as server,
        rest_bridge(server.addr) as bridge,
        grpc.insecure_channel(server.addr) as channel,
        httpx.Client(base_url=bridge.url, timeout=30) as http,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        # Pools and caches grow once, before the baseline: a full sync, so the node connections reach the
        # window's cap (CHAINSYNC_RPC_CONCURRENCY keep-alive connections, kept for the next job) and the
        # store's statements are all prepared.
        warm = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
        disconnect_round(stub, http, warm)
        wait_for_state(stub, warm, TERMINAL)
        time.sleep(0.5)
        server_before, bridge_before = usage(server.proc.pid, store), usage(bridge.proc.pid)

        job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
        for n in range(ROUNDS):
            disconnect_round(stub, http, job_id)
            if n == 0:  # the first round lands mid-job; the soak's later ones may outlast it
                assert stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).state == jobs_pb2.JOB_STATE_RUNNING
        job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        found = records(stub, job_id)
        assert_no_duplicates(found)
        assert found == reference
        # Still serving, over both paths.
        assert http.get(f"/api/blockchain/sync/status/{job_id}").json()["job"]["status"] == "completed"
        events = list(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=30))
        assert events[-1].job.state == jobs_pb2.JOB_STATE_COMPLETED
        # No leak: after many abandoned streams, threads and open files are back near where they were.
        server_after = settle(server.proc.pid, server_before, slack=3, store=store)
        bridge_after = settle(bridge.proc.pid, bridge_before, slack=3)
        assert server_after[0] <= server_before[0] + 3, f"server threads {server_before[0]} -> {server_after[0]}"
        assert server_after[1] <= server_before[1] + 3, f"server files {server_before[1]} -> {server_after[1]}"
        assert bridge_after[0] <= bridge_before[0] + 3, f"bridge threads {bridge_before[0]} -> {bridge_after[0]}"
        assert bridge_after[1] <= bridge_before[1] + 3, f"bridge files {bridge_before[1]} -> {bridge_after[1]}"
