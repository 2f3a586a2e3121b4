"""The ``chainsync sync`` and ``chainsync jobs`` commands against real processes.

Output and exit codes are checked in-process (``main(argv, out, err)``) where
that is enough, and through the real ``chainsync`` command (a subprocess) for
the exit codes that a shell sees.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from chainsync_client import GrpcClient
from chainsync_client.cli import main

from tests.processes import REPO, Service, free_port, rest_bridge
from tests.stack import slow_server, wait_until

TOKEN = "cli-test-token"


class Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def run(argv: list[str], err: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), err or io.StringIO()
    code = main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def command(*args: str, env: dict[str, str] | None = None, timeout_s: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def slow(devnet, tmp_path_factory) -> Iterator[tuple[Service, Service]]:
    db = tmp_path_factory.mktemp("cli-slow") / "jobs.sqlite3"
    with slow_server(devnet, db, CHAINSYNC_API_TOKEN=TOKEN) as server, rest_bridge(server.addr) as bridge:
        yield server, bridge


def test_sync_watch_shows_progress_then_a_summary_table(stack) -> None:
    code, out, err = run(["sync", "--full", "--watch", "--grpc-addr", stack.server.addr])
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("job ")
    job_id = lines[0].split()[1]
    assert lines[-1].startswith("completed") and "100%" in lines[-1] and "records 360/360" in lines[-1], lines[-1]
    assert any("blocks" in line and "blk/s" in line for line in lines), "blocks and rate shown while running"
    table = dict(line.split(None, 1) for line in out.splitlines())
    assert table["job"] == job_id and table["status"] == "completed" and table["progress"] == "100%"
    with GrpcClient(stack.server.addr) as client:
        totals = client.result(job_id, page_size=1).totals
        job = client.status(job_id)
    assert table["records"] == ", ".join(f"{totals[k]:,} {k}" for k in ("proposals", "petitions", "reports"))
    assert table["blocks"].startswith(f"{job.from_block:,}..{job.to_block:,}")


def test_sync_json_over_rest_and_without_watch(stack) -> None:
    code, out, _ = run(["sync", "--blocks-back", "200", "--watch", "--json", "--rest-url", stack.bridge.url])
    assert code == 0
    summary = json.loads(out)
    assert summary["job"]["status"] == "completed" and set(summary["totals"]) == {"proposals", "petitions", "reports"}

    code, out, _ = run(["sync", "--blocks-back", "5", "--grpc-addr", stack.server.addr])
    assert code == 0 and out.startswith("started job ")
    code, out, _ = run(["sync", "--from-block", "1", "--to-block", "20", "--json", "--grpc-addr", stack.server.addr])
    assert code == 0 and json.loads(out)["status"] in ("pending", "running", "completed")


def test_the_progress_bar_redraws_in_place_on_a_terminal(stack) -> None:
    tty = Tty()
    code, _, err = run(["sync", "--blocks-back", "500", "--watch", "--grpc-addr", stack.server.addr], err=tty)
    assert code == 0
    assert "\r" in err and "\x1b[K" in err and "█" in err and err.endswith("\n")
    assert err.count("\n") == 2, "the job line, then one bar redrawn in place"


def test_jobs_list_show_result_cancel_delete(stack) -> None:
    addr = ["--grpc-addr", stack.server.addr]
    code, out, _ = run(["sync", "--blocks-back", "300", "--watch", "--json", *addr])
    job_id = json.loads(out)["job"]["id"]

    code, out, _ = run(["jobs", "list", "--limit", "3", *addr])
    assert code == 0 and out.splitlines()[0].split() == ["ID", "STATUS", "TYPE", "PROGRESS", "BLOCKS", "CREATED"]
    assert job_id in out.splitlines()[1] and "of" in out.splitlines()[-1]
    code, out, _ = run(["jobs", "list", "--status", "completed", "--json", "--rest-url", stack.bridge.url])
    listing = json.loads(out)
    assert code == 0 and listing["jobs"] and all(j["status"] == "completed" for j in listing["jobs"])

    code, out, _ = run(["jobs", "show", job_id, *addr])
    assert code == 0 and f"job       {job_id}" in out
    code, out, _ = run(["jobs", "show", job_id, "--json", "--rest-url", stack.bridge.url])
    assert json.loads(out)["id"] == job_id

    code, out, _ = run(["jobs", "result", job_id, *addr])
    result = json.loads(out)
    assert code == 0 and result["jobId"] == job_id
    assert all(type(result[k]) is int for k in ("fromBlock", "toBlock", "chainId", "eventsCount"))
    assert result["cursor"] == {"jobId": job_id, "toBlock": result["toBlock"], "toBlockHash": result["toBlockHash"]}
    assert result["after"] is None and result["reorg"] is None
    assert result["dropped"] == {"proposals": [], "petitions": [], "reports": []}
    code, out, _ = run(["jobs", "result", job_id, "--ndjson", "--page-size", "4", "--rest-url", stack.bridge.url])
    lines = [json.loads(line) for line in out.splitlines()]
    for kind in ("proposals", "petitions", "reports"):
        assert [{k: v for k, v in r.items() if k != "kind"} for r in lines if r["kind"] == kind] == result[kind]

    code, out, _ = run(["jobs", "cancel", job_id, *addr])
    assert code == 0 and "completed" in out, "a finished job stays as it is"
    code, out, _ = run(["jobs", "delete", job_id, *addr])
    assert code == 0 and job_id in out
    code, _, err = run(["jobs", "show", job_id, *addr])
    assert code == 1 and "JOB_NOT_FOUND" in err


def test_sync_after_continues_from_a_job(stack) -> None:
    addr = ["--rest-url", stack.bridge.url]
    code, out, err = run(["sync", "--full", "--watch", "--json", *addr])
    assert code == 0, err
    full = json.loads(out)["job"]
    assert type(full["toBlock"]) is int and type(full["stats"]["reorgs"]) is int
    code, out, err = run(["sync", "--after", full["id"], "--watch", "--json", *addr])
    assert code == 0, err
    incremental = json.loads(out)["job"]
    code, out, _ = run(["jobs", "result", incremental["id"], *addr])
    assert json.loads(out)["after"] == full["id"]
    code, out, err = run(["sync", "--incremental", "--watch", "--json", *addr])
    assert code == 0 and json.loads(out)["job"]["status"] == "completed", err
    code, _, err = run(["sync", "--after", "00000000-0000-4000-8000-000000000000", *addr])
    assert code == 1 and "CURSOR_NOT_FOUND" in err


def test_refused_requests_exit_1_with_the_reason(stack) -> None:
    code, _, err = run(["jobs", "show", "not-a-job", "--grpc-addr", stack.server.addr])
    assert code == 1 and "INVALID_JOB_ID" in err
    code, _, err = run(["jobs", "result", str(uuid.uuid4()), "--rest-url", stack.bridge.url])
    assert code == 1 and "JOB_NOT_FOUND" in err
    code, _, err = run(["sync", "--blocks-back", "0", "--grpc-addr", stack.server.addr])
    assert code == 1 and "blocksBack" in err


def test_exit_codes_through_the_real_command(stack, slow) -> None:
    server = slow[0]
    ok = command("sync", "--blocks-back", "50", "--watch", "--grpc-addr", stack.server.addr)
    assert ok.returncode == 0, ok.stderr
    assert "status    completed" in ok.stdout

    failed = command(
        "sync",
        "--full",
        "--watch",
        "--job-timeout",
        "1",
        "--grpc-addr",
        server.addr,
        env={"CHAINSYNC_API_TOKEN": TOKEN},
    )
    assert failed.returncode == 1, failed.stderr
    assert "status    failed" in failed.stdout and "JOB_TIMEOUT" in failed.stdout

    watching = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "sync", "--full", "--watch", "--token", TOKEN, "--grpc-addr", server.addr],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job_id = watching.stderr.readline().split()[1]  # "job <id>" comes first
        with GrpcClient(server.addr, token=TOKEN) as client:
            wait_until(lambda: client.status(job_id).stats.blocks_done > 0, 30)
            client.cancel(job_id)
        assert watching.wait(timeout=30) == 2
        assert "status    cancelled" in watching.stdout.read()
    finally:
        if watching.poll() is None:
            watching.kill()
            watching.wait(timeout=10)
        watching.stdout.close()
        watching.stderr.close()

    refused = command("jobs", "list", "--grpc-addr", server.addr, env={"CHAINSYNC_API_TOKEN": ""})
    assert refused.returncode == 3 and "Bearer" in refused.stderr
    nobody = free_port()
    for args in (
        ["jobs", "list", "--grpc-addr", f"127.0.0.1:{nobody}"],
        ["sync", "--full", "--rest-url", f"http://127.0.0.1:{nobody}"],
    ):
        unreachable = command(*args)
        assert unreachable.returncode == 3 and "unreachable" in unreachable.stderr, args
    for args in (
        ["sync", "--full", "--blocks-back", "3"],
        ["jobs"],
        ["sync", "--from-block", "3"],
        ["sync", "--full", "--after", "00000000-0000-4000-8000-000000000000"],
        ["jobs", "list", "--status", "done"],
    ):
        usage = command(*args)
        assert usage.returncode == 3, (args, usage.stderr)
    assert "sync" in command("--help").stdout
