"""The REST bridge, route by route, against the session stack (real devnet, gRPC server, uvicorn bridge).

Every response a test here gets goes through ``api``, which validates it
against the bridge's own /openapi.json: a route, status, header or field the
document does not describe fails the test.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.processes import free_port, rest_bridge
from tests.stack import slow_server, wait_until

NDJSON = "application/x-ndjson"
TERMINAL = ("completed", "failed", "cancelled")


class OpenApi:
    """Validates real responses against the bridge's OpenAPI 3.1 document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def validate(self, response: httpx.Response, template: str, method: str) -> None:
        operation = self.doc["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {template}: status {status} is not documented"
        content = operation["responses"][status].get("content")
        if not content:
            assert not response.content, f"{method} {template} {status}: a body the document does not describe"
            return
        media = response.headers.get("content-type", "").split(";")[0]
        assert media in content, f"{method} {template} {status}: {media} is not documented ({list(content)})"
        if media == "application/json":
            schema = {**content[media]["schema"], "components": self.doc["components"]}
            Draft202012Validator(schema).validate(response.json())


class Api:
    """The session bridge, every response checked against the OpenAPI document."""

    def __init__(self, http: httpx.Client, spec: OpenApi) -> None:
        self.http = http
        self.spec = spec

    def call(self, method: str, template: str, job_id: str | None = None, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, template.replace("{jobId}", job_id or ""), **kwargs)
        self.spec.validate(response, template, method)
        return response

    def start(self, **body: Any) -> str:
        response = self.call("POST", "/api/blockchain/sync", json=body)
        assert response.status_code == 202, response.text
        return response.json()["jobId"]

    def status(self, job_id: str) -> dict[str, Any]:
        response = self.call("GET", "/api/blockchain/sync/status/{jobId}", job_id)
        assert response.status_code == 200, response.text
        return response.json()["job"]

    def finish(self, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
        return wait_until(
            lambda: (job := self.status(job_id))["status"] in TERMINAL and job, timeout_s, what=f"job {job_id} to end"
        )


def sse_events(response: httpx.Response, max_lines: int = 10_000) -> Iterator[dict]:
    """The events of an SSE response as {"event", "id", "data"} dicts; {"event": "ping"} for each comment."""
    current: dict[str, Any] = {}
    for count, line in enumerate(response.iter_lines()):
        assert count < max_lines, "runaway stream"
        if line.startswith(":"):
            yield {"event": "ping"}
        elif line:
            name, _, value = line.partition(": ")
            current[name] = json.loads(value) if name == "data" else value
        elif current:
            if "event" in current:
                yield current
            current = {}


def read_sse(response: httpx.Response, stop_after_jobs: int | None = None) -> list[dict]:
    events: list[dict] = []
    for event in sse_events(response):
        events.append(event)
        if stop_after_jobs is not None and sum(e["event"] == "job" for e in events) >= stop_after_jobs:
            break
    return events


@pytest.fixture(scope="module")
def spec(stack) -> OpenApi:
    response = stack.http.get("/openapi.json")
    assert response.status_code == 200
    return OpenApi(response.json())


@pytest.fixture(scope="module")
def api(stack, spec) -> Api:
    return Api(stack.http, spec)


@pytest.fixture(scope="module")
def done_job(api: Api) -> str:
    """A completed full sync, shared by the read-only tests of this module."""
    job_id = api.start(isFullSync=True)
    assert api.finish(job_id)["status"] == "completed"
    return job_id


def test_openapi_documents_every_route_body_and_error(stack, spec: OpenApi) -> None:
    routes = {(path, method) for path, ops in spec.doc["paths"].items() for method in ops}
    assert routes >= {
        ("/api/blockchain/sync", "post"),
        ("/api/blockchain/sync/status/{jobId}", "get"),
        ("/api/blockchain/sync/result/{jobId}", "get"),
        ("/api/blockchain/sync/events/{jobId}", "get"),
        ("/jobs", "get"),
        ("/jobs/{jobId}:cancel", "post"),
        ("/jobs/{jobId}", "delete"),
        ("/healthz", "get"),
    }
    for path, method in routes - {("/healthz", "get")}:
        responses = spec.doc["paths"][path][method]["responses"]
        assert "422" not in responses, f"{method} {path}: bad input is a 400 here"
        for status in ("400", "401", "500", "503"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody"), (
                path,
                method,
                status,
            )
    body = spec.doc["paths"]["/api/blockchain/sync"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/StartSyncBody")
    assert set(spec.doc["components"]["schemas"]["StartSyncBody"]["properties"]) == {
        "blocksBack",
        "isFullSync",
        "type",
        "requestId",
        "fromBlock",
        "toBlock",
        "incremental",
        "after",
        "confirmations",
        "timeoutSeconds",
    }
    assert spec.doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert all(
        op.get("security") == [{"bearer": []}]
        for path, ops in spec.doc["paths"].items()
        for op in ops.values()
        if path != "/healthz"
    )
    docs = stack.http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_start_status_and_result_have_the_spec_shapes(api: Api, devnet) -> None:
    started = api.call("POST", "/api/blockchain/sync", json={"blocksBack": 1000, "isFullSync": False})
    assert started.status_code == 202
    body = started.json()
    job_id = body["jobId"]
    assert started.headers["location"] == body["statusUrl"] == f"/api/blockchain/sync/status/{job_id}"
    assert body["resultUrl"] == f"/api/blockchain/sync/result/{job_id}"
    assert body["message"] == "Blockchain sync job started" and body["job"]["status"] in ("pending", "running")

    job = api.finish(job_id)
    assert job["status"] == "completed" and job["progress"] == 100
    assert {"id", "type", "status", "progress", "message", "createdAt", "startedAt"} <= set(job)
    assert job["toBlock"] - job["fromBlock"] <= 1000

    result = api.call("GET", "/api/blockchain/sync/result/{jobId}", job_id)
    assert result.status_code == 200
    payload = result.json()
    assert payload["success"] is True and payload["completedAt"] == job["completedAt"]
    assert (payload["result"]["fromBlock"], payload["result"]["toBlock"]) == (job["fromBlock"], job["toBlock"])
    for kind in ("proposals", "petitions", "reports"):
        assert len(payload["result"][kind]) == payload["result"]["totals"][kind]
    assert "nextPageToken" not in payload


def test_idempotency_key_header_or_request_id_returns_the_same_job(api: Api) -> None:
    key = f"test-{uuid.uuid4()}"
    first = api.call("POST", "/api/blockchain/sync", json={"blocksBack": 5}, headers={"Idempotency-Key": key})
    again = api.call("POST", "/api/blockchain/sync", json={"blocksBack": 5}, headers={"Idempotency-Key": key})
    in_body = api.call("POST", "/api/blockchain/sync", json={"blocksBack": 5, "requestId": key})
    assert first.status_code == again.status_code == in_body.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"] == in_body.json()["jobId"]
    assert again.json()["message"] != first.json()["message"]  # says it is the job already started
    other = api.call("POST", "/api/blockchain/sync", json={"blocksBack": 5})
    assert other.json()["jobId"] != first.json()["jobId"], "no key: a new job"
    clash = api.call("POST", "/api/blockchain/sync", json={"requestId": "a"}, headers={"Idempotency-Key": "b"})
    assert clash.status_code == 400 and clash.json()["details"]["field"] == "Idempotency-Key"
    bad = api.call("POST", "/api/blockchain/sync", json={}, headers={"Idempotency-Key": "no spaces please"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "Idempotency-Key"
    api.finish(first.json()["jobId"])
    api.finish(other.json()["jobId"])


def test_result_pages_add_up_to_the_whole_result(api: Api, done_job: str) -> None:
    whole = api.call("GET", "/api/blockchain/sync/result/{jobId}", done_job).json()["result"]
    joined: dict[str, list] = {"proposals": [], "petitions": [], "reports": []}
    token, pages = None, 0
    for _ in range(100):
        pages += 1
        params = {"pageSize": 25, **({"pageToken": token} if token else {})}
        page = api.call("GET", "/api/blockchain/sync/result/{jobId}", done_job, params=params).json()
        for kind in joined:
            assert len(page["result"][kind]) <= 25
            joined[kind] += page["result"][kind]
            assert page["result"]["totals"][kind] == whole["totals"][kind]
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == math.ceil(max(whole["totals"].values()) / 25) > 1
    for kind in joined:
        assert joined[kind] == whole[kind]


def test_ndjson_streams_every_record_then_a_summary(api: Api, done_job: str) -> None:
    whole = api.call("GET", "/api/blockchain/sync/result/{jobId}", done_job).json()["result"]
    for params in ({}, {"pageSize": 7}):
        with api.http.stream(
            "GET", f"/api/blockchain/sync/result/{done_job}", params=params, headers={"Accept": NDJSON}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(NDJSON)
            lines = [json.loads(line) for line in response.iter_lines() if line]
        summary = lines.pop()
        assert summary["kind"] == "summary" and summary["jobId"] == done_job
        assert summary["totals"] == whole["totals"] == summary["sent"]
        assert summary["toBlock"] == whole["toBlock"] and summary["completedAt"]
        for kind in ("proposals", "petitions", "reports"):
            streamed = [{k: v for k, v in line.items() if k != "kind"} for line in lines if line["kind"] == kind]
            assert streamed == whole[kind], kind
    not_found = api.call("GET", "/api/blockchain/sync/result/{jobId}", str(uuid.uuid4()), headers={"Accept": NDJSON})
    assert not_found.status_code == 404 and not_found.json()["code"] == "JOB_NOT_FOUND"


def test_list_jobs_filters_and_pages_by_number_and_by_token(api: Api) -> None:
    def listing(**params: Any) -> dict:
        response = api.call("GET", "/jobs", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    before = listing(type="petitions_sync")["pagination"]["total"]
    mine = [api.start(blocksBack=3, type="petitions_sync") for _ in range(5)]
    for job_id in mine:
        api.finish(job_id)
    first = listing(type="petitions_sync", limit=2)
    total = first["pagination"]["total"]
    assert total == before + 5
    assert first["pagination"] == {"page": 1, "limit": 2, "total": total, "totalPages": math.ceil(total / 2)}
    assert [j["id"] for j in first["jobs"]] == mine[::-1][:2], "newest first"

    by_number = [
        j["id"]
        for page in range(1, first["pagination"]["totalPages"] + 1)
        for j in listing(type="petitions_sync", limit=2, page=page)["jobs"]
    ]
    by_token, token = [], None
    for _ in range(total):
        body = listing(type="petitions_sync", limit=2, **({"pageToken": token} if token else {}))
        by_token += [j["id"] for j in body["jobs"]]
        assert body["pagination"]["page"] == len(by_token) // 2 + (len(by_token) % 2)
        token = body.get("nextPageToken")
        if not token:
            break
    assert by_number == by_token and len(set(by_number)) == total
    assert set(mine) <= set(by_number)
    assert all(j["type"] == "petitions_sync" for j in first["jobs"])

    completed = listing(status="completed", limit=100)
    assert completed["jobs"] and all(j["status"] == "completed" for j in completed["jobs"])
    assert listing(status="failed", type="petitions_sync")["jobs"] == []
    past_the_end = listing(type="petitions_sync", limit=2, page=first["pagination"]["totalPages"] + 1)
    assert past_the_end["jobs"] == [] and "nextPageToken" not in past_the_end


@pytest.mark.parametrize(
    "params, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"page": 0}, "page"),
        ({"status": "done"}, "status"),
        ({"type": "everything"}, "type"),
        ({"pageToken": "garbage"}, "pageToken"),
        ({"pageToken": "2.garbage"}, "pageToken"),
        ({"page": 2, "pageToken": "2.x"}, "page"),
    ],
)
def test_bad_list_query_is_a_400_naming_the_field(api: Api, params: dict, field: str) -> None:
    response = api.call("GET", "/jobs", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["details"]["field"] == field and field in response.json()["error"]


def test_cancel_and_delete_a_finished_job(api: Api) -> None:
    job_id = api.start(blocksBack=3)
    api.finish(job_id)
    cancelled = api.call("POST", "/jobs/{jobId}:cancel", job_id)
    assert cancelled.status_code == 200 and cancelled.json()["job"]["status"] == "completed", "terminal stays"
    deleted = api.call("DELETE", "/jobs/{jobId}", job_id)
    assert deleted.status_code == 200 and deleted.json()["jobId"] == job_id
    for method, template in [
        ("GET", "/api/blockchain/sync/status/{jobId}"),
        ("DELETE", "/jobs/{jobId}"),
        ("POST", "/jobs/{jobId}:cancel"),
        ("GET", "/api/blockchain/sync/result/{jobId}"),
        ("GET", "/api/blockchain/sync/events/{jobId}"),
    ]:
        gone = api.call(method, template, job_id)
        assert gone.status_code == 404, (method, template, gone.text)
        assert gone.json()["code"] == "JOB_NOT_FOUND" and gone.json()["details"]["jobId"] == job_id


@pytest.mark.parametrize(
    "method, template",
    [
        ("GET", "/api/blockchain/sync/status/{jobId}"),
        ("GET", "/api/blockchain/sync/result/{jobId}"),
        ("GET", "/api/blockchain/sync/events/{jobId}"),
        ("POST", "/jobs/{jobId}:cancel"),
        ("DELETE", "/jobs/{jobId}"),
    ],
)
def test_malformed_job_id_is_a_400_on_every_route(api: Api, method: str, template: str) -> None:
    response = api.call(method, template, "not-a-uuid")
    assert response.status_code == 400 and response.json()["code"] == "INVALID_JOB_ID"


def test_bad_result_paging_and_last_event_id_are_400s(api: Api, done_job: str) -> None:
    for params, field in [
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 10_001}, "pageSize"),
        ({"pageToken": "!!"}, "pageToken"),
    ]:
        response = api.call("GET", "/api/blockchain/sync/result/{jobId}", done_job, params=params)
        assert response.status_code == 400 and response.json()["details"]["field"] == field, response.text
    for headers, params, field in [
        ({"Last-Event-ID": "abc"}, {}, "Last-Event-ID"),
        ({}, {"lastEventId": -1}, "lastEventId"),
    ]:
        response = api.call("GET", "/api/blockchain/sync/events/{jobId}", done_job, headers=headers, params=params)
        assert response.status_code == 400 and response.json()["details"]["field"] == field, response.text


def test_unknown_routes_methods_bodies_and_sizes_get_json_errors(api: Api, stack) -> None:
    assert stack.http.get("/nope").json()["code"] == "NOT_FOUND"
    wrong = stack.http.put("/jobs")
    assert wrong.status_code == 405 and wrong.json()["success"] is False
    for content in (b"[1, 2]", b'"x"', b"{broken"):
        response = api.call(
            "POST", "/api/blockchain/sync", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400 and response.json()["details"]["field"] == "body", content

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    chunked = api.call("POST", "/api/blockchain/sync", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["code"] == "BODY_TOO_LARGE", "no Content-Length, still capped"


def test_cors_is_off_by_default(stack) -> None:
    response = stack.http.get("/healthz", headers={"Origin": "http://127.0.0.1:3000"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_sse_streams_the_job_then_end_and_resumes_with_last_event_id(api: Api) -> None:
    job_id = api.start(isFullSync=True)
    with api.http.stream("GET", f"/api/blockchain/sync/events/{job_id}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = read_sse(response)
    jobs = [e for e in events if e["event"] == "job"]
    assert events[-1]["event"] == "end" and events[-1]["data"] == {"jobId": job_id, "status": "completed"}
    assert jobs[-1]["data"]["status"] == "completed" and jobs[-1]["data"]["progress"] == 100
    sequences = [int(e["id"]) for e in jobs]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "no gap, no repeat"
    progress = [e["data"]["progress"] for e in jobs]
    assert progress == sorted(progress)
    last = dict(jobs[-1]["data"])
    event_time = last.pop("eventTime")
    assert last == api.status(job_id), "data is the status endpoint's job object, plus eventTime"
    assert last["createdAt"] <= event_time and event_time.endswith("Z"), "eventTime: RFC 3339, when it happened"

    # Resuming from any event replays exactly what came after it, from the job's event log.
    with api.http.stream(
        "GET", f"/api/blockchain/sync/events/{job_id}", headers={"Last-Event-ID": str(sequences[0])}
    ) as response:
        replay = [e for e in read_sse(response) if e["event"] == "job"]
    assert [int(e["id"]) for e in replay] == sequences[1:]
    with api.http.stream(
        "GET", f"/api/blockchain/sync/events/{job_id}", params={"lastEventId": sequences[0]}
    ) as response:
        assert [int(e["id"]) for e in read_sse(response) if e["event"] == "job"] == sequences[1:]
    # Nothing left after the last event: 204 tells a browser's EventSource to stop reconnecting.
    seen_all = api.call(
        "GET", "/api/blockchain/sync/events/{jobId}", job_id, headers={"Last-Event-ID": str(sequences[-1])}
    )
    assert seen_all.status_code == 204


@pytest.fixture(scope="module")
def slow_stack(devnet, tmp_path_factory) -> Iterator[tuple[Api, str]]:
    """A server whose full sync lasts several seconds, and a bridge (pinging every 0.2 s) in front of it."""
    db = tmp_path_factory.mktemp("bridge-slow") / "jobs.sqlite3"
    with slow_server(devnet, db) as server, rest_bridge(server.addr, {"CHAINSYNC_SSE_PING_SECONDS": "0.2"}) as bridge:
        with httpx.Client(base_url=bridge.url, timeout=30) as http:
            spec = OpenApi(http.get("/openapi.json").json())
            yield Api(http, spec), server.addr


def test_sse_reconnect_mid_job_with_last_event_id_misses_nothing(slow_stack) -> None:
    api, _ = slow_stack
    job_id = api.start(isFullSync=True)
    with api.http.stream("GET", f"/api/blockchain/sync/events/{job_id}") as response:
        before = [e for e in read_sse(response, stop_after_jobs=3) if e["event"] == "job"]
    assert before[-1]["data"]["status"] in ("pending", "running"), "the job should still be going"
    with api.http.stream(
        "GET", f"/api/blockchain/sync/events/{job_id}", headers={"Last-Event-ID": before[-1]["id"]}
    ) as response:
        after = read_sse(response)
    assert after[-1]["event"] == "end"
    sequences = [int(e["id"]) for e in before + [e for e in after if e["event"] == "job"]]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), sequences
    assert after[-2]["data"]["status"] == "completed"


def test_cancel_a_running_job_through_rest_ends_its_event_stream(slow_stack) -> None:
    api, _ = slow_stack
    job_id = api.start(isFullSync=True)
    events: list[dict] = []
    cancel_sent = False
    with api.http.stream("GET", f"/api/blockchain/sync/events/{job_id}") as response:
        for event in sse_events(response):
            events.append(event)
            if not cancel_sent and event["event"] == "job" and event["data"]["stats"]["blocksDone"] > 0:
                assert api.call("POST", "/jobs/{jobId}:cancel", job_id).status_code == 200
                cancel_sent = True
    assert cancel_sent
    assert events[-1] == {"event": "end", "data": {"jobId": job_id, "status": "cancelled"}}
    final = [e for e in events if e["event"] == "job"][-1]["data"]
    assert final["status"] == "cancelled" and final["errorCode"] == "JOB_CANCELLED"
    assert final["stats"]["blocksDone"] > 0
    assert api.call("GET", "/api/blockchain/sync/result/{jobId}", job_id).json()["details"]["state"] == "cancelled"
    assert api.call("DELETE", "/jobs/{jobId}", job_id).status_code == 200


def test_delete_a_running_job_cancels_it_first(slow_stack) -> None:
    api, _ = slow_stack
    job_id = api.start(isFullSync=True)
    wait_until(lambda: api.status(job_id)["status"] == "running", 30)
    assert api.call("DELETE", "/jobs/{jobId}", job_id).status_code == 200
    assert api.call("GET", "/api/blockchain/sync/status/{jobId}", job_id).status_code == 404


def test_grpc_server_down_is_a_clear_503_on_every_route() -> None:
    with rest_bridge(f"127.0.0.1:{free_port()}") as bridge, httpx.Client(base_url=bridge.url, timeout=30) as http:
        spec = OpenApi(http.get("/openapi.json").json())
        api = Api(http, spec)
        job_id = str(uuid.uuid4())
        for method, template, kwargs in [
            ("POST", "/api/blockchain/sync", {"json": {}}),
            ("GET", "/api/blockchain/sync/status/{jobId}", {}),
            ("GET", "/api/blockchain/sync/result/{jobId}", {}),
            ("GET", "/api/blockchain/sync/events/{jobId}", {}),
            ("GET", "/jobs", {}),
            ("POST", "/jobs/{jobId}:cancel", {}),
            ("DELETE", "/jobs/{jobId}", {}),
        ]:
            response = api.call(method, template, job_id, **kwargs)
            assert response.status_code == 503, (method, template, response.text)
            assert response.json()["code"] == "GRPC_UNAVAILABLE" and "unreachable" in response.json()["error"]
            assert response.headers["retry-after"] == "1"
        assert http.get("/healthz").status_code == 200
