"""The bridge's status mirror (rest_bridge/status_mirror.py, docs/rest-api.md "Status from memory").

Polls are answered from memory after the first, yet they follow the job as the
server sees it: every change of a live job, a cancel or delete made straight
through gRPC, and each token only its own jobs. Real server, real bridge,
the demo devnet behind a 25 ms proxy so that jobs last a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from rest_bridge.convert import job_json
from tests.processes import free_port, grpc_server, rest_bridge
from tests.stack import slow_server, wait_for_state, wait_until

STATUS = "/api/blockchain/sync/status/{}"


def status_answers(http: httpx.Client) -> dict[str, float]:
    """chainsync_bridge_status_answers_total by source, from the bridge's /metrics."""
    counts = {"memory": 0.0, "server": 0.0}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("chainsync_bridge_status_answers_total{"):
            source = line.split('source="', 1)[1].split('"', 1)[0]
            counts[source] = float(line.rsplit(" ", 1)[1])
    return counts


@pytest.fixture(scope="module")
def mirrored(devnet, tmp_path_factory) -> Iterator[tuple[httpx.Client, jobs_pb2_grpc.JobServiceStub]]:
    db = tmp_path_factory.mktemp("mirror") / "jobs.sqlite3"
    with slow_server(devnet, db) as server, rest_bridge(server.addr) as bridge:
        with httpx.Client(base_url=bridge.url, timeout=30) as http, grpc.insecure_channel(server.addr) as channel:
            yield http, jobs_pb2_grpc.JobServiceStub(channel)


def test_polls_follow_a_live_job_from_memory_to_its_last_version(mirrored) -> None:
    http, stub = mirrored
    before = status_answers(http)
    job_id = http.post("/api/blockchain/sync", json={"isFullSync": True}).json()["jobId"]
    seen: list[dict] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = http.get(STATUS.format(job_id)).json()["job"]
        seen.append(job)
        if job["status"] == "completed":
            break
        time.sleep(0.02)
    assert seen[-1]["status"] == "completed", "the job should complete within 2 minutes"
    done = [j["stats"]["blocksDone"] for j in seen]
    assert done == sorted(done) and len(set(done)) > 3, f"progress should be seen moving, never back: {done}"
    # What the bridge answers at the end is the server's own last version, field for field.
    assert seen[-1] == job_json(stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)))
    after = status_answers(http)
    from_server = after["server"] - before["server"]
    from_memory = after["memory"] - before["memory"]
    assert from_memory >= len(seen) - 3 and from_server <= 3, (from_memory, from_server, len(seen))


def test_a_cancel_straight_through_grpc_reaches_the_polls_at_once(mirrored) -> None:
    http, stub = mirrored
    job_id = http.post("/api/blockchain/sync", json={"isFullSync": True}).json()["jobId"]
    wait_until(lambda: http.get(STATUS.format(job_id)).json()["job"]["stats"]["blocksDone"] > 0, 60)
    stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
    cancelled = wait_for_state(stub, job_id, (jobs_pb2.JOB_STATE_CANCELLED,), 30)
    started = time.monotonic()
    job = wait_until(
        lambda: (j := http.get(STATUS.format(job_id)).json()["job"])["status"] == "cancelled" and j, 5, 0.005
    )
    lag = time.monotonic() - started
    assert job == job_json(cancelled)
    assert lag < 1.0, f"the bridge showed the cancel {lag:.3f} s after the server"


def test_a_finished_job_deleted_elsewhere_is_gone_within_a_second(mirrored) -> None:
    http, stub = mirrored
    job_id = http.post("/api/blockchain/sync", json={"blocksBack": 5}).json()["jobId"]
    wait_until(lambda: http.get(STATUS.format(job_id)).json()["job"]["status"] == "completed", 60)
    assert http.get(STATUS.format(job_id)).status_code == 200  # held now
    stub.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id))
    deleted = time.monotonic()
    wait_until(lambda: http.get(STATUS.format(job_id)).status_code == 404, 5, 0.01)
    assert time.monotonic() - deleted < 1.5, "the stated bound is 1 s for a finished job deleted elsewhere"
    assert http.get(STATUS.format(job_id)).json()["code"] == "JOB_NOT_FOUND"


def test_a_live_job_deleted_elsewhere_is_gone_at_once(mirrored) -> None:
    http, stub = mirrored
    job_id = http.post("/api/blockchain/sync", json={"isFullSync": True}).json()["jobId"]
    wait_until(lambda: http.get(STATUS.format(job_id)).json()["job"]["status"] == "running", 60)
    stub.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id))  # cancels, waits for the stop, deletes
    deleted = time.monotonic()
    wait_until(lambda: http.get(STATUS.format(job_id)).status_code == 404, 5, 0.01)
    assert time.monotonic() - deleted < 1.5


def test_each_token_reads_only_its_own_answers(devnet, tmp_path) -> None:
    env = {"CHAINSYNC_API_TOKEN": "alice=tok-alice-1,bob=tok-bob-2"}
    alice, bob = {"Authorization": "Bearer tok-alice-1"}, {"Authorization": "Bearer tok-bob-2"}
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db",
                     extra_env=env) as server, rest_bridge(server.addr) as bridge:  # fmt: skip
        with httpx.Client(base_url=bridge.url, timeout=30) as http:
            job_id = http.post("/api/blockchain/sync", json={"blocksBack": 5}, headers=alice).json()["jobId"]
            wait_until(lambda: http.get(STATUS.format(job_id), headers=alice).json()["job"]["status"] in
                       ("completed", "failed"), 60)  # fmt: skip
            for _ in range(3):  # alice's answer is held now; nobody else reads it
                assert http.get(STATUS.format(job_id), headers=alice).status_code == 200
                assert http.get(STATUS.format(job_id), headers=bob).json()["code"] == "JOB_NOT_FOUND"
                assert http.get(STATUS.format(job_id)).json()["code"] == "MISSING_TOKEN"
                wrong = {"Authorization": "Bearer tok-alice-1x"}
                assert http.get(STATUS.format(job_id), headers=wrong).json()["code"] == "INVALID_TOKEN"
            assert status_answers(http)["memory"] >= 2


def test_a_restarted_server_is_asked_again(devnet, tmp_path) -> None:
    """A live job's answer is dropped when its stream breaks: while the server is down polls get 503, not a
    frozen answer; once a server is back on the same address, the job as that server has it."""
    db, port = tmp_path / "jobs.sqlite3", free_port()
    with rest_bridge(f"127.0.0.1:{port}") as bridge, httpx.Client(base_url=bridge.url, timeout=30) as http:
        with slow_server(devnet, db, port=port):
            job_id = http.post("/api/blockchain/sync", json={"isFullSync": True}).json()["jobId"]
            wait_until(lambda: http.get(STATUS.format(job_id)).json()["job"]["status"] == "running", 60)
        # stopped (SIGTERM): the job goes back to the queue, and the bridge's stream ends
        wait_until(lambda: http.get(STATUS.format(job_id)).status_code == 503, 5, 0.01)
        with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, port=port):
            job = wait_until(
                lambda: (
                    (r := http.get(STATUS.format(job_id))).status_code == 200
                    and r.json()["job"]["status"] in ("completed", "failed", "cancelled")
                    and r.json()["job"]
                ),
                120,
            )
    assert job["status"] == "completed", job
