"""The anvil process.

Owns: finding the anvil binary in the repo's node_modules, the flags it is
started with (see docs/devnet.md for why each one), waiting until it answers
JSON-RPC, and stopping it: SIGINT first, so that anvil writes its state when
it was asked to, then SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from devnet.artifacts import REPO

CHAIN_ID = 31337
HARDFORK = "cancun"
GENESIS_TIMESTAMP = 1_735_689_600  # 2025-01-01T00:00:00Z
BLOCK_INTERVAL_S = 12  # seconds between blocks while seeding
BLOCK_GAS_LIMIT = 30_000_000
ACCOUNTS = 30
# Block states anvil keeps in memory by default (--prune-history N), so that
# eth_call works at the last N blocks. Memory only: nothing is written under
# --cache-path. anvil 1.7.1 keeps a full copy of the state per block (every
# storage slot and every earlier block hash), so keeping all of a few thousand
# blocks costs gigabytes; see docs/devnet.md for the measurements.
DEFAULT_HISTORY = 256


class AnvilError(RuntimeError):
    """anvil could not be started or did not answer."""


def anvil_binary() -> Path:
    """anvil from the npm package @foundry-rs/anvil in the repo's node_modules."""
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    path = REPO / "node_modules" / "@foundry-rs" / f"anvil-{system}-{machine}" / "bin" / "anvil"
    if not path.is_file():
        raise AnvilError(f"no anvil binary at {path}; run `npm install` in {REPO} (without --omit=optional)")
    return path


@dataclass
class Anvil:
    """A running anvil. Stop it with stop(), or use it as a context manager."""

    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    dump_path: Path | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 120.0) -> int:
        """Stop anvil (SIGINT, which makes it dump state if it was started with a
        dump path); SIGKILL if it has not exited after timeout_s. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.returncode == 0 and self.log_path.is_file() and self.log_path.stat().st_size == 0:
            self.log_path.unlink()  # nothing to keep
        return self.process.returncode


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port whose old connections linger in TIME_WAIT is free
        # (anvil binds that way too); one that something listens on is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def start_anvil(
    port: int,
    *,
    state_path: Path | None,
    workdir: Path,
    host: str = "127.0.0.1",
    dump_path: Path | None = None,
    manual_mining: bool = False,
    history: int = DEFAULT_HISTORY,
    ready_timeout_s: float = 120.0,
    detach: bool = False,
) -> Anvil:
    """Start anvil on host:port and wait until it answers JSON-RPC.

    state_path: an anvil state file to load (None: a new chain).
    dump_path: where anvil writes its state (with the block states it kept) when stopped.
    manual_mining: no automine; blocks are mined only by evm_mine / anvil_mine.
    history: how many block states to keep in memory (--prune-history N; 0 keeps
        only the latest, which is also the fastest to mine).
    detach: start it in its own session, so that it outlives this process.

    Raises AnvilError naming the port if the port is taken, anvil exits, or it
    does not answer within ready_timeout_s.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not _port_is_free(host, port):
        raise AnvilError(f"port {port} on {host} is already in use; stop what listens there or pick another port")
    if state_path is not None and not Path(state_path).is_file():
        raise AnvilError(f"no anvil state file at {state_path}")

    home = workdir / "home"  # anvil writes under ~/.foundry
    home.mkdir(exist_ok=True)
    args = [
        str(anvil_binary()),
        "--host", host,
        "--port", str(port),
        "--chain-id", str(CHAIN_ID),
        "--hardfork", HARDFORK,
        "--accounts", str(ACCOUNTS),
        "--gas-limit", str(BLOCK_GAS_LIMIT),
        "--order", "fifo",
        "--cache-path", str(workdir / "cache"),
        "--quiet",
    ]  # fmt: skip
    args += ["--prune-history"] + ([str(history)] if history else [])
    if state_path is not None:
        args += ["--load-state", str(state_path)]
    else:
        args += ["--timestamp", str(GENESIS_TIMESTAMP)]
    if dump_path is not None:
        args += ["--dump-state", str(dump_path), "--preserve-historical-states"]
    if manual_mining:
        args += ["--no-mining"]

    log_path = workdir / f"anvil-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(home)},
            start_new_session=detach,
        )
    anvil = Anvil(host, port, process, log_path, dump_path)
    try:
        _wait_until_ready(anvil, ready_timeout_s)
    except BaseException:
        anvil.process.kill()
        anvil.process.wait(timeout=10)
        raise
    return anvil


def _wait_until_ready(anvil: Anvil, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if anvil.process.poll() is not None:
                raise AnvilError(
                    f"anvil on port {anvil.port} exited with code {anvil.process.returncode} "
                    f"before answering:\n{_log_tail(anvil.log_path)}"
                )
            try:
                if client.post(anvil.url, json=body).json().get("result"):
                    if anvil.process.poll() is None:  # it is our anvil that answered
                        return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.02)
    raise AnvilError(f"anvil on port {anvil.port} did not answer JSON-RPC within {timeout_s:.0f} s")
