"""Real processes for tests: the gRPC server and the REST bridge on free loopback ports.

Each helper starts the real ``chainsync`` command as a subprocess, waits (bounded)
until it listens, and stops it (SIGTERM, then SIGKILL) when the block ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s} s")


def stop_process(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


@dataclass
class Service:
    addr: str  # host:port
    proc: subprocess.Popen
    metrics_addr: str = ""  # host:port of a server's Prometheus /metrics

    @property
    def url(self) -> str:
        return f"http://{self.addr}"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The process's stdout and stderr (its log) go to an unlinked temporary file, not a pipe: nobody reads a
    pipe while the process runs, and a full one would block the process. ``proc.stdout`` reads that file from
    its start, so ``proc.stdout.read()`` is everything written so far."""
    fd, path = tempfile.mkstemp(prefix="chainsync-", suffix=".log")
    try:
        with os.fdopen(fd, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", *args],
                cwd=REPO,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc.stdout = open(path, encoding="utf-8", errors="replace")  # opened apart: its own read offset
    finally:
        os.unlink(path)  # the file lives on while the process and the reader hold it
    return proc


@contextmanager
def grpc_server(
    *,
    rpc_url: str,
    deployment_path: Path | str,
    db: Path | str,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Service]:
    """``chainsync serve`` on 127.0.0.1:port (a free port unless given: a restarted server takes its old one)."""
    port = port or free_port()
    metrics_addr = f"127.0.0.1:{free_port()}"  # never the default 9464, which another server may hold
    env = {
        "CHAINSYNC_METRICS_ADDR": metrics_addr,
        "CHAINSYNC_RPC_URL": rpc_url,
        "CHAINSYNC_DEPLOYMENT": str(deployment_path),
        "CHAINSYNC_DB": str(db),
        "CHAINSYNC_GRPC_ADDR": f"127.0.0.1:{port}",
        "CHAINSYNC_WORKERS": str(workers),
        **(extra_env or {}),
    }
    proc = _spawn(["serve"], env)
    try:
        wait_for_port(port, proc, "chainsync serve")
        yield Service(f"127.0.0.1:{port}", proc, metrics_addr=env["CHAINSYNC_METRICS_ADDR"])
    finally:
        stop_process(proc)


@contextmanager
def rest_bridge(grpc_addr: str, extra_env: dict[str, str] | None = None) -> Iterator[Service]:
    port = free_port()
    env = {"CHAINSYNC_GRPC_ADDR": grpc_addr, "CHAINSYNC_HTTP_ADDR": f"127.0.0.1:{port}", **(extra_env or {})}
    proc = _spawn(["bridge"], env)
    try:
        wait_for_port(port, proc, "chainsync bridge")
        yield Service(f"127.0.0.1:{port}", proc)
    finally:
        stop_process(proc)


@contextmanager
def silent_rpc() -> Iterator[str]:
    """A loopback TCP listener that accepts connections and never answers: an RPC node that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
