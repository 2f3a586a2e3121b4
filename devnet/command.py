"""`chainsync devnet`, and the helpers the tests and `make run` use.

Owns: the devnet folder (default ``.devnet/``, git-ignored)::

    .devnet/
      deployment.json, expected.json   the devnet `chainsync devnet` started last
      demo/  bench/                    one saved chain per scale:
        state.json                       anvil's state (blocks, receipts, kept block states)
        deployment.json, expected.json   its contracts and the seeder's record
        build.json                       fingerprint of what built it, and how long it took
      home/  cache/  anvil-<port>.log  anvil's HOME, cache path and output

building a scale's chain once (start anvil, deploy, seed, stop so that anvil
writes its state), and starting anvil from the saved state afterwards, which
takes seconds. A saved chain is rebuilt when the contracts, the scenario or
the anvil binary change (the fingerprint differs), or when asked (fresh).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from devnet.anvil import BLOCK_INTERVAL_S, Anvil, AnvilError, anvil_binary, start_anvil
from devnet.artifacts import ARTIFACTS_DIR, CONTRACT_NAMES
from devnet.deploy import deploy, load_deployment, write_deployment
from devnet.model import Expected, load_expected
from devnet.rpc import Rpc
from devnet.scenario import SCALES
from devnet.seed import seed

DEFAULT_WORKDIR = Path(".devnet")
_BUILD_INPUTS = ("anvil.py", "deploy.py", "model.py", "scenario.py", "seed.py")


@dataclass(frozen=True)
class SavedChain:
    """Where a scale's saved chain lives."""

    workdir: Path
    scale: str

    @property
    def dir(self) -> Path:
        return self.workdir / self.scale

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def deployment(self) -> Path:
        return self.dir / "deployment.json"

    @property
    def expected(self) -> Path:
        return self.dir / "expected.json"

    @property
    def build_info(self) -> Path:
        return self.dir / "build.json"

    def is_current(self) -> bool:
        """All files there, built from the current contracts, scenario and anvil."""
        if not all(p.is_file() for p in (self.state, self.deployment, self.expected, self.build_info)):
            return False
        try:
            return json.loads(self.build_info.read_text()).get("fingerprint") == fingerprint(self.scale)
        except ValueError:
            return False


def fingerprint(scale: str) -> str:
    """A hash of everything that decides what the saved chain holds."""
    h = hashlib.sha256(scale.encode())
    for name in CONTRACT_NAMES:
        h.update((ARTIFACTS_DIR / f"{name}.json").read_bytes())
    here = Path(__file__).resolve().parent
    for name in _BUILD_INPUTS:
        h.update((here / name).read_bytes())
    binary = anvil_binary().stat()
    h.update(f"{binary.st_size}:{int(binary.st_mtime)}".encode())
    return h.hexdigest()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One builder per saved chain at a time, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_chain(workdir: Path, scale: str, *, log=print) -> dict[str, Any]:
    """Build the `scale` chain from scratch and save it; return the build info."""
    cfg = SCALES[scale]
    saved = SavedChain(Path(workdir), scale)
    saved.dir.mkdir(parents=True, exist_ok=True)
    partial = saved.dir / "state.json.partial"
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    log(f"devnet: building the {scale} chain (deploy, seed, save); this happens once")
    anvil = start_anvil(
        free_port(),
        state_path=None,
        workdir=saved.workdir,
        dump_path=partial,
        manual_mining=True,
        history=cfg.build_history,
    )
    with anvil:
        with Rpc(anvil.url) as rpc:
            rpc.call("anvil_setBlockTimestampInterval", BLOCK_INTERVAL_S)
        deployment = deploy(anvil.url)
        expected = seed(anvil.url, deployment, scale)
        seeded = time.monotonic()
    if anvil.process.returncode != 0 or not partial.is_file():
        raise AnvilError(f"anvil did not save its state (exit code {anvil.process.returncode}); see {anvil.log_path}")
    write_deployment(deployment, saved.deployment)
    expected.write(saved.expected)
    partial.replace(saved.state)  # the state file last: it marks the chain as complete
    info = {
        "fingerprint": fingerprint(scale),
        "seconds": round(time.monotonic() - started, 1),
        "seedSeconds": round(seeded - started, 1),
        "stateBytes": saved.state.stat().st_size,
        "counts": expected.counts,
        "headBlock": expected.head_block,
    }
    saved.build_info.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log(
        f"devnet: built the {scale} chain in {info['seconds']} s "
        f"({expected.head_block} blocks, {expected.counts['events']} events)"
    )
    return info


def ensure_devnet_state(workdir: Path = DEFAULT_WORKDIR, scale: str = "demo", *, fresh: bool = False,
                        log=print) -> Path:  # fmt: skip
    """The folder of the saved `scale` chain, building it first if it is missing or stale."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    saved = SavedChain(Path(workdir), scale)
    with _lock(Path(workdir) / f"{scale}.lock"):
        if fresh and saved.dir.exists():
            shutil.rmtree(saved.dir)
        if not saved.is_current():
            build_chain(Path(workdir), scale, log=log)
    return saved.dir


@dataclass
class RunningDevnet:
    """anvil started from a saved chain, with that chain's deployment and Expected."""

    anvil: Anvil
    scale: str
    deployment: dict[str, Any]
    deployment_path: Path
    expected: Expected

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def historical_state_from(self) -> int:
        """The oldest block eth_call works at: anvil loaded only the last block states."""
        kept = SCALES[self.scale].build_history
        return max(0, self.expected.head_block - kept + 1) if kept else self.expected.head_block


def start_devnet(workdir: Path = DEFAULT_WORKDIR, scale: str = "demo", port: int | None = None, *,
                 host: str = "127.0.0.1", detach: bool = False, log=print) -> RunningDevnet:  # fmt: skip
    """Start anvil from the saved `scale` chain (building it first if needed). The caller stops it."""
    workdir = Path(workdir)
    saved = SavedChain(workdir, scale)
    ensure_devnet_state(workdir, scale, log=log)
    anvil = start_anvil(
        port if port is not None else free_port(host),
        state_path=saved.state,
        workdir=workdir,
        host=host,
        history=SCALES[scale].serve_history,
        detach=detach,
    )
    return RunningDevnet(
        anvil, scale, load_deployment(saved.deployment), saved.deployment, load_expected(saved.expected)
    )


@contextmanager
def open_devnet(
    workdir: Path = DEFAULT_WORKDIR, scale: str = "demo", port: int | None = None
) -> Iterator[RunningDevnet]:
    """A devnet from the saved `scale` chain for the block's duration (free port unless given).

    Nothing it does is saved: the next one starts from the same chain.
    """
    devnet = start_devnet(workdir, scale, port, log=lambda *_: None)
    try:
        yield devnet
    finally:
        devnet.anvil.stop()


def run_devnet(*, host: str = "127.0.0.1", port: int = 8545, workdir: Path = DEFAULT_WORKDIR, scale: str = "demo",
               fresh: bool = False, foreground: bool = True) -> int:  # fmt: skip
    """The body of `chainsync devnet`: serve the saved chain on host:port (building it once).

    Writes <workdir>/deployment.json and <workdir>/expected.json. In the
    foreground, blocks until Ctrl-C or SIGTERM and stops anvil; otherwise
    leaves anvil running on its own (its pid in <workdir>/devnet.pid).
    Returns the exit code.
    """
    workdir = Path(workdir)
    started = time.monotonic()
    try:
        if fresh:
            ensure_devnet_state(workdir, scale, fresh=True)
        devnet = start_devnet(workdir, scale, port, host=host, detach=not foreground)
    except (AnvilError, ValueError) as exc:
        print(f"devnet: {exc}", file=sys.stderr)
        return 1
    deployment_path = write_deployment(devnet.deployment, workdir / "deployment.json")
    shutil.copyfile(SavedChain(workdir, scale).expected, workdir / "expected.json")
    counts = devnet.expected.counts
    print(
        f"devnet ({scale}) ready in {time.monotonic() - started:.1f} s\n"
        f"  RPC URL          {devnet.url}  (chain id {devnet.expected.chain_id})\n"
        f"  deployment file  {deployment_path}\n"
        f"  expected data    {workdir / 'expected.json'}\n"
        f"  blocks 0..{devnet.expected.head_block}: {counts['proposals']} proposals, {counts['petitions']} petitions, "
        f"{counts['reports']} reports, {counts['events']} events in {counts['transactions']} transactions",
        flush=True,
    )
    if not foreground:
        (workdir / "devnet.pid").write_text(f"{devnet.anvil.process.pid}\n")
        print(f"  running in the background as pid {devnet.anvil.process.pid}", flush=True)
        return 0

    def stop_on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        code = devnet.anvil.process.wait()
        print(f"devnet: anvil exited with code {code}; see {devnet.anvil.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("devnet: stopping", flush=True)
        return 0
    finally:
        devnet.anvil.stop()
        signal.signal(signal.SIGTERM, previous)
