"""The RPC node unreachable for a while during a job (a FaultProxy in front of anvil)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import grpc_server
from tests.reliability import assert_no_duplicates, records, reference_records, scale
from tests.stack import TERMINAL, wait_for_state, wait_until

OUTAGE_S = scale(5.0, 10.0)


@pytest.fixture(scope="module")
def full_reference(stack) -> dict:
    return reference_records(stack.stub, is_full_sync=True)


@contextmanager
def job_under_way(devnet, tmp_path, env: dict[str, str]) -> Iterator[tuple[FaultProxy, object, str]]:
    """(proxy, stub, job id): a full sync through a fault proxy on a server of its own, past its first blocks."""
    with FaultProxy(devnet.url, Faults(delay_s=0.01)) as proxy:
        with (
            grpc_server(
                rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=tmp_path / "jobs.db", extra_env=env
            ) as server,
            grpc.insecure_channel(server.addr) as channel,
        ):
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.blocks_done > 0, 60)
            yield proxy, stub, job_id


OUTAGES = scale([Faults(drop=True)], [Faults(drop=True), Faults(status=503)])  # connection dropped / HTTP 503


@pytest.mark.parametrize("fault", OUTAGES, ids=lambda f: "drop" if f.drop else str(f.status))
def test_node_down_shorter_than_the_budget_then_back_the_job_completes_exactly(
    devnet, tmp_path, full_reference, fault
) -> None:
    env = {"CHAINSYNC_RPC_BUDGET": str(int(OUTAGE_S * 4)), "CHAINSYNC_LOG_CHUNK": "20"}
    with job_under_way(devnet, tmp_path, env) as (proxy, stub, job_id):
        proxy.faults = fault
        faulted_at = proxy.faulted
        time.sleep(OUTAGE_S)
        during = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
        assert during.state == jobs_pb2.JOB_STATE_RUNNING, "the job waits for the node, it does not fail"
        proxy.faults = Faults()
        assert proxy.faulted > faulted_at, "the outage was hit"
        job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        found = records(stub, job_id)
        assert_no_duplicates(found)
        assert found == full_reference


def test_node_down_longer_than_the_budget_fails_rpc_unavailable_without_records(devnet, tmp_path) -> None:
    env = {"CHAINSYNC_RPC_BUDGET": "2", "CHAINSYNC_LOG_CHUNK": "20"}
    with job_under_way(devnet, tmp_path, env) as (proxy, stub, job_id):
        proxy.faults = Faults(drop=True)
        job = wait_for_state(stub, job_id, TERMINAL, timeout_s=30)
        assert job.state == jobs_pb2.JOB_STATE_FAILED
        assert job.error.code == "RPC_UNAVAILABLE", job.error
        assert proxy.url.removeprefix("http://") in job.error.message and "tries" in job.error.message
        with pytest.raises(grpc.RpcError) as err:
            stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, "a failed job has no records"
        proxy.faults = Faults()  # the node is back: the server still serves new jobs
        again = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=50)).job_id
        assert wait_for_state(stub, again, TERMINAL, timeout_s=60).state == jobs_pb2.JOB_STATE_COMPLETED
