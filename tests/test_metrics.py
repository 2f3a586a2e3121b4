"""Prometheus /metrics of the gRPC server and the REST bridge, scraped while a real job runs and after it.

One real server (its node a fault proxy in front of the devnet: slow, three
HTTP 429 answers, eth_getLogs ranges over 10 blocks refused) and one real
bridge. The scrapes are parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import REPO, free_port, grpc_server, rest_bridge
from tests.stack import wait_until

STATUS_ROUTE = "/api/blockchain/sync/status/{jobId}"
SERVICE = "chainsync.v1.JobService"
KEY, SECRET = "sekretKEY123", "hunter2"  # what a provider URL carries in its path and query


def scrape(http: httpx.Client, url: str) -> tuple[str, list]:
    """(text, samples) of one scrape."""
    response = http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    return text, [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples called name whose labels include these (0 when there are none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_metrics_move_during_a_job_and_add_up_after_it(devnet, tmp_path) -> None:
    # The scan asks for 100 blocks; quicknode's refusal names the range it takes (50): one split, then the
    # sync keeps to it. Each eth_getLogs waits 0.1 s, so the demo chain's scan takes about 5 s.
    faults = Faults(
        delay_s=0.1, delay_only=("eth_getLogs",), status=429, fail_next=3, max_range=50, provider="quicknode"
    )
    with (
        FaultProxy(devnet.url, faults) as proxy,
        grpc_server(
            rpc_url=f"{proxy.url}/v3/{KEY}?apiKey={SECRET}",
            deployment_path=devnet.deployment_path,
            db=tmp_path / "jobs.sqlite3",
            extra_env={"CHAINSYNC_LOG_CHUNK": "100", "CHAINSYNC_RPC_CONCURRENCY": "1"},  # slow: scraped mid-job
        ) as server,
        rest_bridge(server.addr) as bridge,
        httpx.Client(base_url=bridge.url, timeout=30) as http,
    ):
        server_metrics = f"http://{server.metrics_addr}/metrics"
        _, before = scrape(http, server_metrics)
        assert value(before, "chainsync_job_duration_seconds_count") == 0
        assert value(before, "chainsync_jobs", state="pending") == 0
        assert value(before, "chainsync_workers") == 2

        started = http.post("/api/blockchain/sync", json={"isFullSync": True})
        assert started.status_code == 202, started.text
        job_id = started.json()["jobId"]
        status_path = f"/api/blockchain/sync/status/{job_id}"

        # While it runs: blocks scanned grows between two scrapes, and the job is counted as running.
        def scanning() -> list | None:
            _, samples = scrape(http, server_metrics)
            return samples if value(samples, "chainsync_blocks_scanned_total") > 0 else None

        first = wait_until(scanning, 30, 0.05, "blocks to be scanned")
        scanned = value(first, "chainsync_blocks_scanned_total")

        def more_scanned() -> list | None:
            _, samples = scrape(http, server_metrics)
            return samples if value(samples, "chainsync_blocks_scanned_total") > scanned else None

        second = wait_until(more_scanned, 30, 0.05, "blocks scanned to grow")
        for samples in (first, second):
            assert value(samples, "chainsync_jobs", state="running") == 1
            assert value(samples, "chainsync_workers_busy") == 1
            assert value(samples, "chainsync_job_duration_seconds_count") == 0

        # An SSE stream open on the bridge is a WatchJob stream open on the server.
        with http.stream("GET", f"/api/blockchain/sync/events/{job_id}") as events:
            assert events.status_code == 200
            lines = events.iter_lines()  # kept: a dropped iterator closes the stream
            assert next(lines).startswith("retry:")
            _, bridge_samples = scrape(http, "/metrics")
            assert value(bridge_samples, "chainsync_bridge_sse_streams_open") == 1
            _, samples = scrape(http, server_metrics)
            assert value(samples, "chainsync_grpc_streams_open", service=SERVICE, method="WatchJob") == 1

        assert http.get(f"/api/blockchain/sync/status/{uuid.uuid4()}").status_code == 404
        assert http.get("/no/such/path").status_code == 404

        def finished() -> dict | None:
            job = http.get(status_path).json()["job"]
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        job = wait_until(finished, 60, 0.1, "the job to finish")
        assert job["status"] == "completed", job
        http_count = "chainsync_bridge_http_request_duration_seconds_count"
        polls = value(scrape(http, "/metrics")[1], http_count, route=STATUS_ROUTE, status="200")
        result = http.get(f"/api/blockchain/sync/result/{job_id}?pageSize=1").json()["result"]

        # The job is `completed` in the store a moment before its worker records it and lets go.
        def settled() -> tuple[str, list] | None:
            text, samples = scrape(http, server_metrics)
            done = (
                value(samples, "chainsync_jobs_finished_total") == 1 and value(samples, "chainsync_workers_busy") == 0
            )
            return (text, samples) if done else None

        text, after = wait_until(settled, 10, 0.05, "the worker to record the job's end")
        endpoint = proxy.url  # scheme://host:port: neither the key in the path nor the one in the query
        assert KEY not in text and SECRET not in text
        assert {s.labels["endpoint"] for s in after if s.name == "chainsync_rpc_requests_total"} == {endpoint}

        done = {"type": "blockchain_sync", "state": "completed"}
        assert value(after, "chainsync_job_duration_seconds_count", **done) == 1
        assert value(after, "chainsync_jobs_finished_total", **done) == 1
        assert 0 < value(after, "chainsync_job_duration_seconds_sum", **done) < 120
        assert value(after, "chainsync_jobs", state="completed") == 1
        assert value(after, "chainsync_jobs", state="running") == 0
        assert value(after, "chainsync_queue_depth") == 0
        assert value(after, "chainsync_workers_busy") == 0
        assert value(after, "chainsync_job_store_up") == 1

        # The counters agree with what the job itself reports.
        stats = {k: int(v) for k, v in job["stats"].items() if k in ("blocksTotal", "eventsFound")}
        assert value(after, "chainsync_blocks_scanned_total") == stats["blocksTotal"] > 0
        assert value(after, "chainsync_events_decoded_total") == stats["eventsFound"] > 0
        for kind, total in result["totals"].items():
            assert value(after, "chainsync_records_synced_total", kind=kind) == total
        assert value(after, "chainsync_records_synced_total") > 0
        assert value(after, "chainsync_range_splits_total", method="eth_getLogs") == 1

        # The node's answers, as the fault proxy gave them.
        assert value(after, "chainsync_rpc_requests_total", endpoint=endpoint, outcome="ok") > 0
        assert value(after, "chainsync_rpc_requests_total", outcome="http_429") == 3
        assert value(after, "chainsync_rpc_retries_total", endpoint=endpoint) == 3
        assert value(after, "chainsync_rpc_requests_total", outcome="range_refused") == proxy.refused == 1
        assert value(after, "chainsync_rpc_request_duration_seconds_count", method="eth_getLogs") > 0

        # gRPC: the bridge asked GetJob for the job's first poll (then followed it with WatchJob, answering
        # the other polls from memory); the unknown job's poll ended NOT_FOUND.
        assert value(after, "chainsync_grpc_request_duration_seconds_count", method="GetJob", code="OK") >= 1
        assert value(after, "chainsync_grpc_request_duration_seconds_count", method="GetJob", code="NOT_FOUND") == 1
        assert value(after, "chainsync_grpc_request_duration_seconds_count", method="WatchJob") == 0
        assert value(after, "chainsync_grpc_requests_total", service=SERVICE, method="WatchJob") >= 2

        # The bridge: route templates (never a job id), statuses, the gRPC error behind the 404.
        text, bridge_samples = scrape(http, "/metrics")
        assert job_id not in text
        assert value(bridge_samples, http_count, method="GET", route=STATUS_ROUTE, status="200") >= polls > 0
        assert value(bridge_samples, http_count, method="GET", route=STATUS_ROUTE, status="404") == 1
        assert value(bridge_samples, http_count, method="POST", route="/api/blockchain/sync", status="202") == 1
        assert value(bridge_samples, http_count, route="(unmatched)", status="404") == 1
        assert value(bridge_samples, "chainsync_bridge_grpc_errors_total", code="NOT_FOUND") == 1
        answers = "chainsync_bridge_status_answers_total"
        answered = {source: value(bridge_samples, answers, source=source) for source in ("memory", "server")}
        assert sum(answered.values()) >= polls + 1 and answered["memory"] >= polls - 3, answered
        assert value(bridge_samples, "chainsync_bridge_http_requests_in_flight") == 1  # this scrape

        def stream_closed() -> bool:
            return value(scrape(http, "/metrics")[1], "chainsync_bridge_sse_streams_open") == 0

        wait_until(stream_closed, 10, 0.05, "the closed SSE stream to be counted out")


def serve_briefly(tmp_path, metrics_addr: str, *, flag: bool = False) -> subprocess.CompletedProcess:
    """`chainsync serve` with this metrics address, for a server expected to exit at once."""
    env = {
        "CHAINSYNC_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "CHAINSYNC_DB": str(tmp_path / "jobs.sqlite3"),
        "PATH": "/usr/bin:/bin",
        **({} if flag else {"CHAINSYNC_METRICS_ADDR": metrics_addr}),
    }
    args = ["--metrics-addr", metrics_addr] if flag else []
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("flag", [False, True], ids=["environment", "flag"])
def test_a_bad_metrics_address_stops_the_server_naming_the_setting(tmp_path, flag: bool) -> None:
    done = serve_briefly(tmp_path, "localhost", flag=flag)
    assert done.returncode != 0
    assert "CHAINSYNC_METRICS_ADDR must be host:port or off, got 'localhost'" in done.stderr


def test_metrics_off_and_an_address_in_use(devnet, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        done = serve_briefly(tmp_path, busy)  # set by hand: the server stops
        assert done.returncode != 0
        assert f"CHAINSYNC_METRICS_ADDR: cannot listen on {busy}" in done.stderr

    kwargs = {"rpc_url": devnet.url, "deployment_path": devnet.deployment_path}
    with grpc_server(**kwargs, db=tmp_path / "off.sqlite3", extra_env={"CHAINSYNC_METRICS_ADDR": "off"}) as server:
        wait_until(lambda: "JobService listening" in log_of(server), 10, 0.05, "the server's listening line")
    assert "metrics on" not in log_of(server)

    # The default address held by another process (another replica on this host): the server runs without metrics.
    with socket.socket() as default:
        # Held by this test, or else by a process that has held it for 5 s (a `make run` server) and will go
        # on holding it; one that holds it only a moment (a test's server started without settings) is waited out.
        deadline = time.monotonic() + 5
        while not _bound(default, ("127.0.0.1", 9464)) and time.monotonic() < deadline:
            time.sleep(0.2)
        with grpc_server(**kwargs, db=tmp_path / "busy.sqlite3", extra_env={"CHAINSYNC_METRICS_ADDR": ""}) as server:
            wait_until(lambda: "JobService listening" in log_of(server), 10, 0.05, "the server's listening line")
            assert server.proc.poll() is None
    assert "cannot listen on 127.0.0.1:9464" in log_of(server) and "serving no metrics" in log_of(server)


def _bound(sock: socket.socket, address: tuple[str, int]) -> bool:
    try:
        sock.bind(address)
    except OSError:
        return False
    sock.listen()
    return True


def log_of(server) -> str:
    """Everything the server process wrote so far (its output file, read from the start)."""
    server.proc.stdout.seek(0)
    return server.proc.stdout.read()


def test_with_an_api_token_refused_calls_are_counted_and_metrics_need_no_token(devnet, tmp_path) -> None:
    token = "metrics-test-token-5f3a"
    with (
        grpc_server(
            rpc_url=devnet.url,
            deployment_path=devnet.deployment_path,
            db=tmp_path / "jobs.sqlite3",
            extra_env={"CHAINSYNC_API_TOKEN": token},
        ) as server,
        grpc.insecure_channel(server.addr) as channel,
        httpx.Client(timeout=30) as http,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetJob(jobs_pb2.GetJobRequest(job_id=str(uuid.uuid4())))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as unknown:
            stub.GetJob(
                jobs_pb2.GetJobRequest(job_id=str(uuid.uuid4())), metadata=[("authorization", f"Bearer {token}")]
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        count = "chainsync_grpc_request_duration_seconds_count"

        def both_counted() -> tuple[str, list] | None:
            # A call is counted as its handler returns, a moment after its status reached the client.
            text, samples = scrape(http, f"http://{server.metrics_addr}/metrics")  # no token: counts only, loopback
            counted = [
                value(samples, count, service=SERVICE, method="GetJob", code=c)
                for c in ("UNAUTHENTICATED", "NOT_FOUND")
            ]
            return (text, samples) if counted == [1, 1] else None

        text, samples = wait_until(both_counted, 5, 0.05, "both refused calls to be counted")
        assert token not in text
