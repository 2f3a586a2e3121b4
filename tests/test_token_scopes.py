"""With several API tokens, each token sees only the jobs it started."""

from __future__ import annotations

import json

import grpc
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from server.service.auth import Tokens
from tests.processes import grpc_server
from tests.stack import TERMINAL, wait_for_state


def test_each_token_sees_only_its_own_jobs(devnet, tmp_path) -> None:
    env = {"CHAINSYNC_API_TOKEN": "alice=tok-alice-1, bob=tok-bob-2, tok-unnamed-3"}
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db",
                     extra_env=env) as server, grpc.insecure_channel(server.addr) as channel:  # fmt: skip
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        alice = (("authorization", "Bearer tok-alice-1"),)
        bob = (("authorization", "Bearer tok-bob-2"),)
        third = (("authorization", "Bearer tok-unnamed-3"),)
        job_id = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=20, request_id="same"), metadata=alice).job_id
        wait_for_state(lambda_stub(stub, alice), job_id, TERMINAL)
        for call, request in [
            (stub.GetJob, jobs_pb2.GetJobRequest(job_id=job_id)),
            (stub.GetResult, jobs_pb2.GetResultRequest(job_id=job_id)),
            (stub.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id)),
            (stub.DeleteJob, jobs_pb2.DeleteJobRequest(job_id=job_id)),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                call(request, metadata=bob)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            list(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), metadata=bob))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bob).total_size == 0
        assert [j.id for j in stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=alice).jobs] == [job_id]
        bobs = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=20, request_id="same"), metadata=bob).job_id
        assert bobs != job_id, "request ids are per token"
        assert stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=20), metadata=third).job_id
        assert stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=third).total_size == 1
        assert stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id), metadata=alice).job_id == job_id


def lambda_stub(stub, metadata):
    """The stub with metadata on every call (for helpers that take a plain stub)."""

    class WithToken:
        def GetJob(self, request):
            return stub.GetJob(request, metadata=metadata)

    return WithToken()


def test_tokens_parse_named_and_unnamed_and_compare_whole_values() -> None:
    tokens = Tokens.parse("alice=a1, b2")
    assert tokens.scoped and tokens.principal("Bearer a1") == "alice"
    assert tokens.principal("Bearer b2").startswith("token-")
    assert tokens.principal("Bearer a") is None and tokens.principal("Bearer a1x") is None
    assert tokens.principal(None) is None and not Tokens.parse("only").scoped
    with pytest.raises(SystemExit):
        Tokens.parse(" , ")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_tokens_and_rpc_url_keys_never_reach_logs_or_errors(devnet, tmp_path, log_format: str) -> None:
    from tests.processes import free_port

    secret_key, token = "k3y-in-the-path-0123456789", "tok-should-not-be-logged"
    dead_node = f"http://127.0.0.1:{free_port()}/v3/{secret_key}?apikey={secret_key}"
    env = {"CHAINSYNC_API_TOKEN": token, "CHAINSYNC_RPC_BUDGET": "1", "CHAINSYNC_LOG_FORMAT": log_format}
    with grpc_server(rpc_url=dead_node, deployment_path=devnet.deployment_path, db=tmp_path / "j.db",
                     extra_env=env) as server, grpc.insecure_channel(server.addr) as channel:  # fmt: skip
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        job_id = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=5), metadata=metadata).job_id
        job = wait_for_state(lambda_stub(stub, metadata), job_id, TERMINAL)
        assert job.error.code == "RPC_UNAVAILABLE" and "127.0.0.1" in job.error.message
        assert secret_key not in job.error.message
        with pytest.raises(grpc.RpcError):
            stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=(("authorization", "Bearer wrong"),))
    output = server.proc.stdout.read()
    assert "listening" in output
    assert secret_key not in output and token not in output
    # The job's lines are there (so the check above looked at them): its retries and its failure.
    job_lines = [line for line in output.splitlines() if job_id in line]
    assert any("RPC request failed" in line for line in job_lines), output
    assert any("job failed" in line and "RPC_UNAVAILABLE" in line for line in job_lines), output
    if log_format == "json":
        entries = [json.loads(line) for line in job_lines]
        assert all(e["job_id"] == job_id for e in entries)
        assert {e["endpoint"] for e in entries if e["message"].startswith("RPC request failed")} == {
            dead_node.split("/v3/")[0]
        }
    else:
        assert all(f"job_id={job_id}" in line for line in job_lines)
