"""Bad input and unknown jobs get clear errors, through REST and gRPC alike.

The server here talks to an RPC node that accepts connections and never
answers, so a started job stays running: that is the "not completed yet" case.
"""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.processes import Service, grpc_server, rest_bridge, silent_rpc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    tmp = tmp_path_factory.mktemp("errors")
    deployment = tmp / "deployment.json"
    deployment.write_text(
        '{"AuthRegistry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",'
        ' "Proposals": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",'
        ' "Petitions": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",'
        ' "Reports": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"}'
    )
    with (
        silent_rpc() as rpc_url,
        grpc_server(rpc_url=rpc_url, deployment_path=deployment, db=tmp / "jobs.db") as server,
    ):
        with rest_bridge(server.addr) as bridge:
            yield server, bridge


@pytest.fixture(scope="module")
def http(stack: tuple[Service, Service]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack[1].url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def stub(stack: tuple[Service, Service]) -> Iterator[jobs_pb2_grpc.JobServiceStub]:
    with grpc.insecure_channel(stack[0].addr) as channel:
        yield jobs_pb2_grpc.JobServiceStub(channel)


def error_reason(err: grpc.RpcError) -> str:
    for key, value in err.trailing_metadata():
        if key == "grpc-status-details-bin":
            info = error_details_pb2.ErrorInfo()
            status_pb2.Status.FromString(value).details[0].Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo in the status")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"blocksBack": -5}, "blocksBack"),
        ({"blocksBack": 0}, "blocksBack"),
        ({"blocksBack": "1000"}, "blocksBack"),
        ({"blocksBack": 10.5}, "blocksBack"),
        ({"blocksBack": 1000.0}, "blocksBack"),
        ({"blocksBack": 10**30}, "blocksBack"),
        ({"blocksBack": True}, "blocksBack"),
        ({"isFullSync": "yes"}, "isFullSync"),
        ({"type": "everything_sync"}, "type"),
        ({"blocksBak": 100}, "blocksBak"),
        ({"timeoutSeconds": 10**9}, "timeoutSeconds"),
        ({"fromBlock": 10, "toBlock": 5}, "fromBlock"),
        ({"blocksBack": 10, "fromBlock": 5}, "blocksBack"),
    ],
)
def test_bad_start_body_is_a_400_naming_the_field(http: httpx.Client, body: dict, field: str) -> None:
    response = http.post("/api/blockchain/sync", json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["success"] is False
    assert payload["details"]["field"] == field
    assert field in payload["error"]


def test_missing_or_malformed_body_is_a_400(http: httpx.Client) -> None:
    missing = http.post("/api/blockchain/sync")
    assert missing.status_code == 400
    assert "body is required" in missing.json()["error"]
    broken = http.post("/api/blockchain/sync", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["details"]["field"] == "body"


def test_oversized_body_is_refused(http: httpx.Client) -> None:
    response = http.post(
        "/api/blockchain/sync",
        content=b'{"x": "' + b"a" * 100_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "BODY_TOO_LARGE"


def test_unknown_job_is_a_404_and_malformed_id_a_400(http: httpx.Client, stub: jobs_pb2_grpc.JobServiceStub) -> None:
    unknown = str(uuid.uuid4())
    for path in (f"/api/blockchain/sync/status/{unknown}", f"/api/blockchain/sync/result/{unknown}"):
        response = http.get(path)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "JOB_NOT_FOUND"
        assert unknown in response.json()["error"]
    malformed = http.get("/api/blockchain/sync/status/not-a-job-id")
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "INVALID_JOB_ID"

    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(jobs_pb2.GetJobRequest(job_id=unknown))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(err.value) == "JOB_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetResult(jobs_pb2.GetResultRequest(job_id="../etc/passwd"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "request_kwargs, field",
    [
        ({"blocks_back": -1}, "blocksBack"),
        ({"blocks_back": 0}, "blocksBack"),
        ({"blocks_back": 2**62}, "blocksBack"),
        ({"timeout_seconds": 0}, "timeoutSeconds"),
        ({"request_id": "has spaces and /"}, "requestId"),
        ({"type": 99}, "type"),
    ],
)
def test_bad_grpc_request_is_invalid_argument(
    stub: jobs_pb2_grpc.JobServiceStub, request_kwargs: dict, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.StartSync(jobs_pb2.StartSyncRequest(**request_kwargs))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


def test_result_before_completion_is_a_409_with_the_state(http: httpx.Client) -> None:
    started = http.post("/api/blockchain/sync", json={"blocksBack": 10})
    assert started.status_code == 202
    job_id = started.json()["jobId"]
    assert started.headers["location"] == f"/api/blockchain/sync/status/{job_id}"
    deadline = time.monotonic() + 10
    status = "pending"
    while status == "pending" and time.monotonic() < deadline:
        status = http.get(f"/api/blockchain/sync/status/{job_id}").json()["job"]["status"]
        time.sleep(0.1)
    assert status == "running"  # the node never answers, so it stays running
    response = http.get(f"/api/blockchain/sync/result/{job_id}")
    assert response.status_code == 409
    assert response.json()["code"] == "JOB_NOT_COMPLETED"
    assert response.json()["details"]["state"] == "running"


def test_grpc_server_down_is_a_503(tmp_path) -> None:
    from tests.processes import free_port

    with rest_bridge(f"127.0.0.1:{free_port()}") as bridge:
        response = httpx.get(f"{bridge.url}/api/blockchain/sync/status/{uuid.uuid4()}", timeout=30)
    assert response.status_code == 503
    assert "unreachable" in response.json()["error"]
