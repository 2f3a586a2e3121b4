"""The JSON existing clients parse: every answer checked against the seed's shapes and types (tests/schemas/seed.json).

ASYNC-BLOCKCHAIN-SYNC.md shows ``"fromBlock": 100`` and ``"createdAt":
"2024-01-01T10:00:00Z"``; design.md fixes the rest: block numbers, counts,
stats and progress are numbers, uint256 values and ids decimal strings, times
RFC 3339 UTC with milliseconds. A client that adds to a block number must not
concatenate strings. And a result that will never exist says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema

from tests.processes import grpc_server, rest_bridge, silent_rpc
from tests.stack import wait_until

SEED = json.loads((Path(__file__).parent / "schemas" / "seed.json").read_text())


def check(shape: str, body: dict) -> None:
    jsonschema.validate(body, {**SEED, "$ref": f"#/{shape}"}, format_checker=jsonschema.FormatChecker())


def finished(http: httpx.Client, job_id: str) -> dict:
    def status() -> dict | None:
        body = http.get(f"/api/blockchain/sync/status/{job_id}").json()
        check("status", body)
        return body["job"] if body["job"]["status"] not in ("pending", "running") else None

    return wait_until(status, 60, 0.05, f"job {job_id} to end")


def test_start_status_result_events_and_ndjson_have_the_seeds_types(stack, devnet) -> None:
    http = stack.http
    started = http.post("/api/blockchain/sync", json={"isFullSync": True}).json()
    check("start", started)
    job = finished(http, started["jobId"])
    assert job["status"] == "completed" and job["progress"] == 100
    assert isinstance(job["fromBlock"], int) and job["toBlock"] == job["fromBlock"] + job["stats"]["blocksTotal"] - 1
    assert set(job["stats"]) >= {"rangeSplits", "reorgs", "contentCids"}, "every field of the proto's JobStats"

    body = http.get(f"/api/blockchain/sync/result/{started['jobId']}").json()
    check("result", body)
    result = body["result"]
    assert (result["fromBlock"], result["toBlock"]) == (job["fromBlock"], job["toBlock"])
    assert result["totals"]["proposals"] == len(result["proposals"]) == devnet.expected.counts["proposals"]
    created = [r["created"]["blockNumber"] for r in result["proposals"] if r["created"]]
    assert created and all(isinstance(b, int) and job["fromBlock"] <= b <= job["toBlock"] for b in created)
    assert all(isinstance(r["yesVotes"], str) and isinstance(r["id"], str) for r in result["proposals"])
    assert result["cursor"] == {
        "jobId": started["jobId"],
        "toBlock": job["toBlock"],
        "toBlockHash": result["toBlockHash"],
    }
    assert result["reorg"] is None and result["dropped"] == {"proposals": [], "petitions": [], "reports": []}

    with http.stream("GET", f"/api/blockchain/sync/events/{started['jobId']}") as stream:
        data = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    check("status", {"success": True, "job": data[0]})
    assert data[0]["eventTime"].endswith("Z") and len(data[0]["eventTime"]) == len("2026-11-30T12:53:26.847Z")

    lines = http.get(
        f"/api/blockchain/sync/result/{started['jobId']}", headers={"Accept": "application/x-ndjson"}
    ).text.splitlines()
    summary = json.loads(lines[-1])
    assert (
        summary["kind"] == "summary"
        and summary["toBlock"] == job["toBlock"]
        and summary["cursor"]["toBlock"] == job["toBlock"]
    )


def test_the_result_of_a_job_that_failed_or_was_cancelled_says_so(stack) -> None:
    http = stack.http
    failed = http.post("/api/blockchain/sync", json={"fromBlock": 1, "toBlock": 10**12}).json()["jobId"]
    assert finished(http, failed)["status"] == "failed"
    answer = http.get(f"/api/blockchain/sync/result/{failed}")
    body = answer.json()
    assert answer.status_code == 409 and body["code"] == "JOB_FAILED"
    assert body["details"]["errorCode"] == "INVALID_RANGE" and "toBlock" in body["details"]["error"]
    assert "INVALID_RANGE" in body["error"]


def test_the_result_of_a_cancelled_job_and_of_one_still_running_say_so(devnet, tmp_path) -> None:
    """A server whose node never answers: its job runs until it is cancelled."""
    with (
        silent_rpc() as rpc_url,
        grpc_server(rpc_url=rpc_url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db") as server,
        rest_bridge(server.addr) as bridge,
        httpx.Client(base_url=bridge.url, timeout=30) as http,
    ):
        job_id = http.post("/api/blockchain/sync", json={"isFullSync": True}).json()["jobId"]
        wait_until(lambda: http.get(f"/api/blockchain/sync/status/{job_id}").json()["job"]["status"] == "running", 30)
        answer = http.get(f"/api/blockchain/sync/result/{job_id}")
        assert answer.status_code == 409 and answer.json()["code"] == "JOB_NOT_COMPLETED"
        assert answer.json()["details"]["state"] == "running"
        http.post(f"/jobs/{job_id}:cancel")
        assert finished(http, job_id)["status"] == "cancelled"
        answer = http.get(f"/api/blockchain/sync/result/{job_id}")
        assert answer.status_code == 409 and answer.json()["code"] == "JOB_CANCELLED"
