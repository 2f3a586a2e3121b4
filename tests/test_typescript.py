"""The TypeScript client, its React hook, and Node speaking our proto, against the real stack.

Each test runs one JS/TS suite as a subprocess (bounded in time) with the
addresses of real processes in environment variables, and fails with the
suite's whole output:

- ``tsc --noEmit`` type-checks clients/typescript (sources, tests, examples);
- ``vitest run`` in clients/typescript: the client's happy and failure paths
  against the bridge, SSE parsing and resume, the React hook in jsdom, and the
  examples of docs/typescript-client.md;
- ``node --test tests/js/grpc-watch.test.mjs``: @grpc/grpc-js loads
  proto/chainsync/v1/jobs.proto as published and runs jobs over gRPC;
- ``node --test tests/js/spec-example.test.mjs``: the spec's JavaScript
  polling example completes.

The ``stack`` fixture is the session's server and bridge; ``slow_stack`` is a
second server (reading the devnet through a delaying proxy, so that a full
sync takes seconds) with its own bridge, for cancel, abort, timeout, resume
and unmount tests; ``auth_stack`` a server that wants a bearer token, with a
bridge that allows one CORS origin. Every process started here is stopped here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import REPO, Service, grpc_server, rest_bridge
from tests.stack import slow_server

TS_DIR = REPO / "clients" / "typescript"
JS_DIR = REPO / "tests" / "js"
BIN = TS_DIR / "node_modules" / ".bin"
CORS_ORIGIN = "http://app.chainsync.test"  # a page origin the auth bridge allows (only ever a header value)


def node() -> str:
    path = shutil.which("node")
    assert path, "node is not on PATH (Node 20 is needed for the TypeScript and Node tests)"
    return path


def require_npm_install() -> None:
    assert (BIN / "vitest").exists(), (
        f"{TS_DIR}/node_modules is missing: run `make install` (it runs `npm ci` in clients/typescript)"
    )


def run_suite(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> str:
    """Runs one suite; asserts exit code 0 and shows its output otherwise. Returns the output.

    The suite runs in its own process group, so that on a timeout its workers
    (vitest forks, node --test children) are killed with it.
    """
    require_npm_install()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", "CI": "true", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"{' '.join(args)} did not finish within {timeout_s} s:\n{out}")
    finally:
        if proc.poll() is None:  # an exception other than the timeout (e.g. KeyboardInterrupt)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode} after {took:.1f} s:\n{out}"
    print(f"{' '.join(args)}: {took:.1f} s\n{out[-3000:]}")
    return out


@pytest.fixture(scope="module")
def slow_stack(devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    """A server whose full sync takes several seconds, and a bridge in front of it."""
    db = tmp_path_factory.mktemp("slow-stack") / "jobs.sqlite3"
    with slow_server(devnet, db, CHAINSYNC_WORKERS="4") as server, rest_bridge(server.addr) as bridge:
        yield server, bridge


@pytest.fixture(scope="module")
def auth_stack(devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service, str]]:
    """A server that wants a bearer token (CHAINSYNC_API_TOKEN), a bridge passing it through, and the token."""
    db = tmp_path_factory.mktemp("auth-stack") / "jobs.sqlite3"
    token = secrets.token_urlsafe(24)
    with grpc_server(
        rpc_url=devnet.url,
        deployment_path=devnet.deployment_path,
        db=db,
        extra_env={"CHAINSYNC_API_TOKEN": token},
    ) as server:
        with rest_bridge(server.addr, extra_env={"CHAINSYNC_CORS_ORIGINS": CORS_ORIGIN}) as bridge:
            yield server, bridge, token


@pytest.fixture(scope="module")
def suite_env(stack, slow_stack, auth_stack) -> dict[str, str]:
    slow_server_, slow_bridge = slow_stack
    auth_server, auth_bridge, token = auth_stack
    return {
        "CHAINSYNC_TEST_BRIDGE_URL": stack.bridge.url,
        "CHAINSYNC_TEST_GRPC_ADDR": stack.server.addr,
        "CHAINSYNC_TEST_SLOW_BRIDGE_URL": slow_bridge.url,
        "CHAINSYNC_TEST_SLOW_GRPC_ADDR": slow_server_.addr,
        "CHAINSYNC_TEST_AUTH_BRIDGE_URL": auth_bridge.url,
        "CHAINSYNC_TEST_AUTH_GRPC_ADDR": auth_server.addr,
        "CHAINSYNC_TEST_AUTH_TOKEN": token,
        "CHAINSYNC_TEST_CORS_ORIGIN": CORS_ORIGIN,
    }


def test_typescript_client_typechecks() -> None:
    run_suite([str(BIN / "tsc"), "--noEmit", "-p", "tsconfig.json"], TS_DIR, {}, timeout_s=180)


def test_typescript_client_and_hook_against_the_bridge(suite_env: dict[str, str]) -> None:
    out = run_suite([str(BIN / "vitest"), "run"], TS_DIR, suite_env, timeout_s=270)
    counts = re.search(r"^\s*Tests\s+(\d+) passed \((\d+)\)\s*$", out, re.MULTILINE)
    assert counts and counts[1] == counts[2], f"every vitest test must run and pass (none skipped):\n{out}"


def test_node_grpc_client_loads_the_published_proto_and_watches_a_job(suite_env: dict[str, str]) -> None:
    run_suite(
        [node(), "--test", "--test-reporter=spec", str(JS_DIR / "grpc-watch.test.mjs")], REPO, suite_env, timeout_s=240
    )


def test_the_spec_javascript_polling_example_completes(suite_env: dict[str, str]) -> None:
    run_suite(
        [node(), "--test", "--test-reporter=spec", str(JS_DIR / "spec-example.test.mjs")],
        REPO,
        suite_env,
        timeout_s=180,
    )
