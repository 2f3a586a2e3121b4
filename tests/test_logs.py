"""Structured logs: every line of a job carries its job id and the request id that started it.

A real server and bridge (JSON logs, a token, an RPC URL with a key in its path
and query, through a loopback proxy that answers 429 twice and caps eth_getLogs
ranges) run a full sync started through the bridge with an X-Request-ID; the
test then reads both processes' logs as a user would with jq.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from server import logs
from tests.fault_proxy import FaultProxy, Faults
from tests.processes import REPO, grpc_server, rest_bridge
from tests.stack import wait_until

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
KEY = "k3y-0f-the-rpc-provider-5150"
TOKEN = "tok-secret-for-the-log-test"


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every log line of a process's output; the one line that is not JSON is the start banner on stdout."""
    lines = []
    for line in output.splitlines():
        if line.startswith("chainsync ") and " on " in line:  # "chainsync gRPC JobService listening on ..."
            continue
        entry = json.loads(line)  # any other line that is not JSON fails here
        assert TIME.fullmatch(entry["time"]) and entry["level"] and entry["logger"] and "message" in entry, line
        lines.append(entry)
    return lines


def test_a_job_started_through_the_bridge_logs_its_job_id_and_request_id_on_every_line(devnet, tmp_path) -> None:
    given = f"client-{uuid.uuid4()}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    faults = Faults(status=429, fail_next=0, max_range=1000, provider="infura")  # armed once the server is up
    with FaultProxy(devnet.url, faults) as proxy:
        rpc_url = f"{proxy.url}/v3/{KEY}?apikey={KEY}"
        server_env = {"CHAINSYNC_API_TOKEN": TOKEN, "CHAINSYNC_LOG_FORMAT": "json"}
        with grpc_server(
            rpc_url=rpc_url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db", extra_env=server_env
        ) as server:
            wait_until(lambda: proxy.requests >= 1, 10, what="the server's trace_filter probe at start")
            faults.fail_next = 2  # the job's first two requests answer 429
            bridge_env = {"CHAINSYNC_LOG_FORMAT": "json", "CHAINSYNC_ACCESS_LOG": "on"}
            with rest_bridge(server.addr, bridge_env) as bridge, httpx.Client(base_url=bridge.url, timeout=30) as http:
                started = http.post(
                    "/api/blockchain/sync", json={"isFullSync": True}, headers={**auth, "X-Request-ID": given}
                )
                assert started.status_code == 202 and started.headers["X-Request-ID"] == given
                job_id = started.json()["jobId"]

                def done() -> bool:
                    status = http.get(f"/api/blockchain/sync/status/{job_id}", headers=auth)
                    return status.json()["job"]["status"] in ("completed", "failed")

                wait_until(done, 60, 0.2, "the job to end")
                status = http.get(f"/api/blockchain/sync/status/{job_id}", headers=auth)
                assert status.json()["job"]["status"] == "completed", status.json()
                generated = status.headers["X-Request-ID"]
                assert UUID4.fullmatch(generated), "a request without X-Request-ID gets a fresh UUIDv4"
                assert http.get("/healthz").headers["X-Request-ID"] != generated

                bad = http.get(f"/api/blockchain/sync/status/{job_id}", headers={**auth, "X-Request-ID": "x" * 129})
                assert bad.status_code == 400 and bad.json()["details"] == {"field": "X-Request-ID"}
                assert "X-Request-ID" in bad.json()["error"] and UUID4.fullmatch(bad.headers["X-Request-ID"])
                unknown = http.get(
                    f"/api/blockchain/sync/status/{uuid.uuid4()}", headers={**auth, "X-Request-ID": "r-404"}
                )
                assert unknown.status_code == 404 and unknown.headers["X-Request-ID"] == "r-404"
                unauthorised = http.get(f"/api/blockchain/sync/status/{job_id}", headers={"X-Request-ID": "r-401"})
                assert unauthorised.status_code == 401 and unauthorised.headers["X-Request-ID"] == "r-401"

            with grpc.insecure_channel(server.addr) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                direct = stub.StartSync(
                    jobs_pb2.StartSyncRequest(blocks_back=5),
                    metadata=(("authorization", f"Bearer {TOKEN}"), ("x-request-id", "grpc-direct-1")),
                ).job_id
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetJob(
                        jobs_pb2.GetJobRequest(job_id=direct),
                        metadata=(("authorization", f"Bearer {TOKEN}"), ("x-request-id", "y" * 129)),
                    )
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "x-request-id" in err.value.details()

                def direct_done() -> bool:
                    job = stub.GetJob(
                        jobs_pb2.GetJobRequest(job_id=direct), metadata=(("authorization", f"Bearer {TOKEN}"),)
                    )
                    return job.state == jobs_pb2.JOB_STATE_COMPLETED

                wait_until(direct_done, 30, 0.1, "the direct job to complete")
    server_out, bridge_out = server.proc.stdout.read(), bridge.proc.stdout.read()
    for output in (server_out, bridge_out):
        assert KEY not in output and TOKEN not in output
    server_lines = json_lines(server_out)

    about_job = [line for line in server_lines if job_id in json.dumps(line)]
    assert all(line.get("job_id") == job_id for line in about_job), [x for x in about_job if x.get("job_id") != job_id]
    run = [line for line in about_job if line["logger"] != "chainsync.servicer"]
    assert run and all(line.get("request_id") == given for line in run), run
    messages = [line["message"] for line in run]
    for expected in ("job claimed", "job started", "scan started", "scan done; reading records", "job finished"):
        assert expected in messages, (expected, messages)
    retries = [line for line in run if line["message"] == "RPC request failed; retrying"]
    assert len(retries) == 2 and all(r["endpoint"] == proxy.url and r["error"] == "HTTP 429" for r in retries)
    assert any(line["message"] == "eth_getLogs range refused; splitting" for line in run), messages
    finished = next(line for line in run if line["message"] == "job finished")
    assert finished["state"] == "completed" and finished["records"] > 0 and finished["duration_s"] > 0
    created = [line for line in about_job if line["message"] == "job created"]
    assert len(created) == 1 and created[0]["request_id"] == given

    direct_run = [line for line in server_lines if line.get("job_id") == direct]
    assert direct_run and all(line["request_id"] == "grpc-direct-1" for line in direct_run)
    assert any(line["message"] == "job finished" for line in direct_run)

    access = [line for line in json_lines(bridge_out) if line["logger"] == "chainsync.access"]
    post = [line for line in access if line["method"] == "POST"]
    assert len(post) == 1 and post[0]["request_id"] == given and post[0]["status"] == 202
    assert post[0]["route"] == "/api/blockchain/sync" and post[0]["duration_ms"] > 0
    by_id = {line["request_id"]: line for line in access}
    assert by_id["r-404"]["status"] == 404 and by_id["r-401"]["status"] == 401
    assert by_id[generated]["route"] == "/api/blockchain/sync/status/{jobId}"
    assert all(line["status"] == 400 for line in access if line["request_id"] == bad.headers["X-Request-ID"])


def _emit(formatter: logging.Formatter, **context: str) -> str:
    """What one logged exception looks like through formatter (a handler of its own: the root stays pytest's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("chainsync.test")
    logger.addHandler(handler)
    try:
        with logs.log_context(**context):
            try:
                raise ValueError(f"bad value from https://node.example/v3/{KEY}")
            except ValueError:
                logger.exception("it broke", extra={"attempt": 3})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_line_has_the_fields_the_traceback_and_no_secret() -> None:
    secrets = logs.secrets_of([TOKEN], [f"https://node.example/v3/{KEY}"])
    out = _emit(logs.JsonFormatter(secrets), job_id="j-1", request_id="r-1")
    (line,) = out.splitlines()
    entry = json.loads(line)
    assert TIME.fullmatch(entry["time"]) and entry["level"] == "ERROR" and entry["logger"] == "chainsync.test"
    assert entry["message"] == "it broke" and entry["attempt"] == 3
    assert entry["job_id"] == "j-1" and entry["request_id"] == "r-1"
    assert (
        entry["exc"].startswith("Traceback") and "ValueError: bad value from https://node.example/***" in entry["exc"]
    )
    assert KEY not in out


def test_text_format_and_settings_are_checked() -> None:
    out = _emit(logs.TextFormatter(logs.secrets_of((), [f"https://node.example/v3/{KEY}"])), job_id="j-2")
    first = out.splitlines()[0]
    assert re.fullmatch(r"\S+Z ERROR chainsync\.test: it broke job_id=j-2 attempt=3", first), first
    assert "Traceback" in out and KEY not in out
    assert logs.check_settings(" JSON", "Warning") == ("json", "warning")
    for fmt, level, name in [("xml", "info", "CHAINSYNC_LOG_FORMAT"), ("json", "loud", "CHAINSYNC_LOG_LEVEL")]:
        with pytest.raises(SystemExit, match=name):
            logs.check_settings(fmt, level)
    assert logs.resolve_format("auto", io.StringIO()) == "json"  # not a terminal
    assert logs.valid_request_id("a b~") and not logs.valid_request_id("") and not logs.valid_request_id("é")
    assert not logs.valid_request_id("x" * 129) and not logs.valid_request_id("a\tb")


def test_start_up_lines_and_log_lines_from_other_threads_never_share_a_line(tmp_path) -> None:
    """With PYTHONUNBUFFERED (as in many container images) and stdout and stderr on one file, as the tests and
    a container's log collector have them: the start-up lines a server announces while its threads already log
    (the trace probe does) leave every log line whole, one JSON object per line."""
    child = (
        "import logging, threading\n"
        "from server import logs\n"
        "logs.setup('json', 'info')\n"
        "def chatter():\n"
        "    for n in range(2000):\n"
        "        logging.getLogger('chainsync.test').info('line %d', n)\n"
        "thread = threading.Thread(target=chatter)\n"
        "thread.start()\n"
        "for n in range(2000):\n"
        "    logs.announce(f'chainsync listening on port {n}')\n"
        "thread.join()\n"
    )
    out = tmp_path / "out.log"
    with out.open("wb") as sink:
        subprocess.run(
            [sys.executable, "-c", child], cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=sink, stderr=subprocess.STDOUT, timeout=60, check=True,
        )  # fmt: skip
    output = out.read_text()
    logged = json_lines(output)  # fails on a line that is neither a start-up line nor a JSON object
    announced = [line for line in output.splitlines() if line.startswith("chainsync ")]
    assert announced == [f"chainsync listening on port {n}" for n in range(2000)]
    assert [entry["message"] for entry in logged] == [f"line {n}" for n in range(2000)]
