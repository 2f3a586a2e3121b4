"""A REST bridge killed (SIGKILL) and started again on the same port while clients poll."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from chainsync_client import RestClient
from chainsync_client.errors import ServiceUnavailable

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import _spawn, free_port, grpc_server, stop_process, wait_for_port
from tests.reliability import assert_no_duplicates, records, reference_records, scale

JOBS = scale(3, 8)
POLLERS_PER_JOB = 2
DOWN_S = scale(1.0, 5.0)
RESTARTS = scale(1, 4)


def start_bridge(grpc_addr: str, port: int):
    proc = _spawn(["bridge"], {"CHAINSYNC_GRPC_ADDR": grpc_addr, "CHAINSYNC_HTTP_ADDR": f"127.0.0.1:{port}"})
    wait_for_port(port, proc, "chainsync bridge")
    return proc


def test_pollers_ride_out_a_bridge_restart_and_all_see_their_jobs_completed(devnet, stack, tmp_path) -> None:
    reference = reference_records(stack.stub, is_full_sync=True)
    env = {"CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_WORKERS": "2"}
    port = free_port()
    with (
        FaultProxy(devnet.url, Faults(delay_s=0.02)) as proxy,
        grpc_server(
            rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=tmp_path / "jobs.db", extra_env=env
        ) as server,
        grpc.insecure_channel(server.addr) as channel,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        bridge = start_bridge(server.addr, port)
        try:
            base = f"http://127.0.0.1:{port}"
            with RestClient(base, timeout=5) as client:
                ids = [client.start_sync(full=True).id for _ in range(JOBS)]
            seen: dict[str, str] = {}
            outages = Counter()
            stop = threading.Event()
            errors: list[BaseException] = []

            def poll(job_id: str, key: str) -> None:
                try:
                    with RestClient(base, timeout=5) as c:
                        while not stop.is_set():
                            try:
                                job = c.status(job_id)
                            except ServiceUnavailable as exc:
                                assert exc.code == "BRIDGE_UNAVAILABLE", exc
                                outages[key] += 1
                            else:
                                if job.done:
                                    seen[key] = job.status
                                    return
                            time.sleep(0.05)
                except BaseException as exc:  # reported by the test thread
                    errors.append(exc)

            threads = [
                threading.Thread(target=poll, args=(job_id, f"{job_id}/{n}"), daemon=True)
                for job_id in ids
                for n in range(POLLERS_PER_JOB)
            ]
            for t in threads:
                t.start()
            for restart in range(RESTARTS):
                time.sleep(0.7)
                states = [stub.GetJob(jobs_pb2.GetJobRequest(job_id=i)).state for i in ids]
                assert restart or jobs_pb2.JOB_STATE_RUNNING in states, "the bridge dies while jobs run"
                os.kill(bridge.pid, signal.SIGKILL)
                bridge.wait(timeout=10)
                time.sleep(DOWN_S)
                bridge = start_bridge(server.addr, port)
            deadline = time.monotonic() + scale(120, 600)
            for t in threads:
                t.join(max(0.1, deadline - time.monotonic()))
            stop.set()
            assert not errors, errors
            assert len(seen) == len(threads), f"pollers that saw their job end: {len(seen)} of {len(threads)}"
            assert set(seen.values()) == {"completed"}, seen
            assert sum(outages.values()) > 0, "the pollers saw the bridge down"
            for job_id in ids:
                found = records(stub, job_id)
                assert_no_duplicates(found)
                assert found == reference
        finally:
            stop_process(bridge)
