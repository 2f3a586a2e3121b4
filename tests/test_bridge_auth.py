"""The bridge in front of a server that wants a bearer token, with CORS origins configured.

The server's RPC node accepts connections and never answers, so a started job
stays running with nothing changing: the case for keep-alive pings and for
"not completed yet". No devnet needed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.processes import Service, grpc_server, rest_bridge, silent_rpc
from tests.test_bridge import Api, OpenApi, sse_events

TOKEN = "s3cret-token"
ORIGIN = "http://127.0.0.1:5173"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("auth")
    deployment = tmp / "deployment.json"
    deployment.write_text(
        '{"AuthRegistry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",'
        ' "Proposals": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",'
        ' "Petitions": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",'
        ' "Reports": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"}'
    )
    env = {"CHAINSYNC_API_TOKEN": TOKEN}
    with (
        silent_rpc() as rpc_url,
        grpc_server(rpc_url=rpc_url, deployment_path=deployment, db=tmp / "jobs.db", extra_env=env) as server,
    ):
        with rest_bridge(
            server.addr,
            {**env, "CHAINSYNC_CORS_ORIGINS": f"{ORIGIN}, http://localhost:5173", "CHAINSYNC_SSE_PING_SECONDS": "0.2"},
        ) as bridge:
            yield bridge


@pytest.fixture(scope="module")
def api(guarded: Service) -> Iterator[Api]:
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        yield Api(http, OpenApi(http.get("/openapi.json").json()))


@pytest.fixture(scope="module")
def running_job(api: Api) -> str:
    response = api.call("POST", "/api/blockchain/sync", json={"blocksBack": 10}, headers=AUTH)
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = api.call("GET", "/api/blockchain/sync/status/{jobId}", job_id, headers=AUTH).json()["job"]
        if job["status"] == "running":
            return job_id
        time.sleep(0.05)
    raise AssertionError("the job did not start")


ROUTES = [
    ("POST", "/api/blockchain/sync", {"json": {"blocksBack": 5}}),
    ("GET", "/api/blockchain/sync/status/{jobId}", {}),
    ("GET", "/api/blockchain/sync/result/{jobId}", {}),
    ("GET", "/api/blockchain/sync/events/{jobId}", {}),
    ("GET", "/jobs", {}),
    ("POST", "/jobs/{jobId}:cancel", {}),
    ("DELETE", "/jobs/{jobId}", {}),
]


@pytest.mark.parametrize("method, template, kwargs", ROUTES)
@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "MISSING_TOKEN"),
        ({"Authorization": "Bearer wrong"}, "INVALID_TOKEN"),
        ({"Authorization": TOKEN}, "INVALID_TOKEN"),
    ],
)
def test_every_route_needs_the_token(
    api: Api, method: str, template: str, kwargs: dict, headers: dict, reason: str
) -> None:
    response = api.call(method, template, str(uuid.uuid4()), headers=headers, **kwargs)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == reason
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_token_passes_through_to_the_server(api: Api, running_job: str) -> None:
    assert api.call("GET", "/api/blockchain/sync/status/{jobId}", running_job, headers=AUTH).status_code == 200
    listing = api.call("GET", "/jobs", headers=AUTH, params={"status": "running"})
    assert running_job in [j["id"] for j in listing.json()["jobs"]]
    unknown = api.call("GET", "/api/blockchain/sync/status/{jobId}", str(uuid.uuid4()), headers=AUTH)
    assert unknown.status_code == 404, "with the token, the server answers for itself"


def test_health_and_docs_are_open(api: Api) -> None:
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert api.http.get(path).status_code == 200, path


def test_result_of_a_running_job_is_a_409_with_its_state(api: Api, running_job: str) -> None:
    response = api.call("GET", "/api/blockchain/sync/result/{jobId}", running_job, headers=AUTH)
    assert response.status_code == 409
    assert response.json()["code"] == "JOB_NOT_COMPLETED" and response.json()["details"]["state"] == "running"
    streamed = api.call(
        "GET", "/api/blockchain/sync/result/{jobId}", running_job, headers={**AUTH, "Accept": "application/x-ndjson"}
    )
    assert streamed.status_code == 409, "NDJSON errors come before the stream, as JSON"


def test_an_idle_event_stream_sends_keepalive_pings(api: Api, running_job: str) -> None:
    seen: list[dict] = []
    t0 = time.monotonic()
    with api.http.stream("GET", f"/api/blockchain/sync/events/{running_job}", headers=AUTH) as response:
        assert response.status_code == 200
        for event in sse_events(response):
            seen.append(event)
            if sum(e["event"] == "ping" for e in seen) >= 3:
                break
    assert seen[0]["event"] == "job" and seen[0]["data"]["status"] == "running"
    assert [e["event"] for e in seen[1:]] == ["ping"] * 3
    assert time.monotonic() - t0 < 5, "pings every 0.2 s as configured"
    # Resuming an idle job starts the stream at once (pings) instead of waiting for its next event.
    with api.http.stream(
        "GET", f"/api/blockchain/sync/events/{running_job}", headers={**AUTH, "Last-Event-ID": seen[0]["id"]}
    ) as response:
        assert response.status_code == 200
        assert next(sse_events(response)) == {"event": "ping"}


def test_cors_preflight_and_simple_requests_from_allowed_origins_only(api: Api) -> None:
    preflight = api.http.options(
        "/api/blockchain/sync",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key", "last-event-id", "x-request-id"} <= set(
        allowed.replace(" ", "").split(",")
    )
    assert "POST" in preflight.headers["access-control-allow-methods"]

    started = api.http.post("/api/blockchain/sync", json={"blocksBack": 5}, headers={**AUTH, "Origin": ORIGIN})
    assert started.status_code == 202
    assert started.headers["access-control-allow-origin"] == ORIGIN
    exposed = started.headers["access-control-expose-headers"].lower()
    assert "location" in exposed and "x-request-id" in exposed, "a page can read its request id"
    second = api.http.get("/healthz", headers={"Origin": "http://localhost:5173"})
    assert second.headers["access-control-allow-origin"] == "http://localhost:5173"

    other = api.http.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = api.http.options(
        "/jobs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    unauthorized = api.http.get("/jobs", headers={"Origin": ORIGIN})
    assert unauthorized.status_code == 401 and unauthorized.headers["access-control-allow-origin"] == ORIGIN, (
        "a browser can read the error"
    )
