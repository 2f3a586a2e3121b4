"""Pieces of `make loadtest` (bench/loadtest.py): the C load tools and their output, open-loop pollers,
process CPU time, the server's gRPC counters, and how stale a replica's answers are.

- ``run_wrk`` / ``run_h2load``: Debian's ``wrk`` (HTTP/1.1) and ``h2load`` (nghttp2-client, HTTP/2: here
  gRPC unary calls) as subprocesses, bounded by a timeout, their text output parsed into numbers.
- ``open_loop_process``: N pollers, each polling its path every ``interval`` seconds at a random phase,
  open loop (each request is sent at its scheduled time whatever the answers; latency counts from the
  scheduled time, so queueing shows: no coordinated omission). Raw keep-alive HTTP/1.1 on
  ``asyncio.open_connection`` in one process; it reports its own CPU time.
- ``staleness``: a replica's GetJob answers matched against the versions the job's writer stored in
  ``job_events`` (every change bumps the version and appends a snapshot there, with the writer's clock).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from bridge_load import percentile
from chainsync.v1 import jobs_pb2
from google.protobuf import json_format

TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client"}  # command -> Debian package

# The load clients run at this niceness where allowed (root, CAP_SYS_NICE): real clients are on other machines,
# and on a shared 2-core machine a client that waits for a core adds its wait to every latency it measures.
CLIENT_NICE = -5


def raise_priority() -> int:
    """This process at CLIENT_NICE if allowed; returns the niceness it has."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, CLIENT_NICE)
    except PermissionError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def niced(command: list[str]) -> list[str]:
    """command under `nice -n CLIENT_NICE` (nice runs it at its own niceness when that is not allowed)."""
    return ["nice", "-n", str(CLIENT_NICE), *command]


def missing_tools() -> list[str]:
    return [f"{cmd} (Debian package {pkg})" for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None]


def tool_version(cmd: str) -> str:
    out = subprocess.run([cmd, "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def summary(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(percentile(ms, 50), 2), "p99": round(percentile(ms, 99), 2), "max": round(max(ms), 2)}


# -- CPU time of processes ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields 3.. (the command name may hold spaces)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds that named processes (and this process's reaped children) used during a block."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.result: dict[str, dict[str, float]] = {}

    def __enter__(self) -> CpuMeter:
        self._wall = time.monotonic()
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._wall
        used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        tool = (children.ru_utime - self._children.ru_utime) + (children.ru_stime - self._children.ru_stime)
        if tool > 0:
            used["load tool"] = tool
        self.result = {
            name: {"cpuSeconds": round(s, 2), "percentOfOneCore": round(100 * s / wall, 1)} for name, s in used.items()
        }


# -- wrk ------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(number) * _UNITS[unit], 2)


def wrk_script(paths: list[str]) -> str:
    """A wrk Lua script whose requests cycle through paths (GET, wrk's default headers)."""
    quoted = ", ".join(f'"{p}"' for p in paths)
    return (
        f"local paths = {{{quoted}}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  return wrk.format(nil, paths[(n % #paths) + 1])\n"
        "end\n"
    )


def parse_wrk(text: str) -> dict[str, Any]:
    requests = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not requests or not rps:
        raise RuntimeError(f"wrk's output has no totals:\n{text}")
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", text, re.M))
    errors: dict[str, int] = {}
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sockets:
        for kind, n in zip(("connect", "read", "write", "timeout"), sockets.groups(), strict=True):
            if int(n):
                errors[f"socket {kind}"] = int(n)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors["non-2xx/3xx"] = int(non_2xx.group(1))
    return {
        "requests": int(requests.group(1)),
        "seconds": _ms(requests.group(2) + requests.group(3)) / 1000,
        "requestsPerSecond": float(rps.group(1)),
        "latencyMs": {f"p{p}": _ms(v) for p, v in percentiles.items()},
        "errors": errors,
    }


def run_wrk(base_url: str, paths: list[str], seconds: float, connections: int, threads: int = 1) -> dict[str, Any]:
    """``wrk -t{threads} -c{connections} -d{seconds}s --latency -s script`` on base_url, the script cycling
    through paths."""
    with tempfile.TemporaryDirectory(prefix="chainsync-wrk-") as tmp:
        script = Path(tmp) / "paths.lua"
        script.write_text(wrk_script(paths))
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
        out = subprocess.run(niced([*command, base_url]), capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode:
        raise RuntimeError(f"wrk exited with {out.returncode}: {out.stderr or out.stdout}")
    shown = " ".join(command[:-2]) + f" -s paths.lua {base_url}"
    return {"command": shown, **parse_wrk(out.stdout), "output": out.stdout.strip().splitlines()}


# -- h2load: gRPC unary calls ---------------------------------------------------------------------------


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: 0 (not compressed), 4-byte big-endian length, the message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def parse_h2load(text: str) -> dict[str, Any]:
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if not finished or not counts or not codes:
        raise RuntimeError(f"h2load's output has no totals:\n{text}")
    total, started, done, succeeded, failed, errored, timeout = (int(n) for n in counts.groups())
    return {
        "seconds": float(finished.group(1)),
        "requestsPerSecond": float(finished.group(2)),
        "requests": {"done": done, "succeeded": succeeded, "failed": failed, "errored": errored, "timeout": timeout},
        "http2xx": int(codes.group(1)),
        "latencyMs": {"min": _ms(timing.group(1)), "mean": _ms(timing.group(3)), "max": _ms(timing.group(2))}
        if timing
        else {},
    }


def run_h2load(url: str, body: bytes, seconds: float, clients: int, streams: int) -> dict[str, Any]:
    """``h2load -c{clients} -m{streams} -D{seconds} -d body`` with gRPC's headers: unary calls of one method."""
    with tempfile.TemporaryDirectory(prefix="chainsync-h2load-") as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        command = ["h2load", "-c", str(clients), "-m", str(streams), "-D", f"{seconds:g}", "-d", str(body_file)]
        command += ["-H", "content-type: application/grpc", "-H", "te: trailers", url]
        out = subprocess.run(niced(command), capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode:
        raise RuntimeError(f"h2load exited with {out.returncode}: {out.stderr or out.stdout}")
    shown = (
        f"h2load -c {clients} -m {streams} -D {seconds:g} -d body.bin "
        f"-H 'content-type: application/grpc' -H 'te: trailers' {url}"
    )
    lines = [line for line in out.stdout.strip().splitlines() if not line.startswith(("progress:", "spawning"))]
    return {"command": shown, **parse_h2load(out.stdout), "output": lines}


def grpc_counts(metrics_addr: str, method: str) -> Counter[str]:
    """The server's chainsync_grpc_requests_total for one method, by status code (its /metrics)."""
    text = httpx.get(f"http://{metrics_addr}/metrics", timeout=10).text
    counts: Counter[str] = Counter()
    for code, value in re.findall(
        r'^chainsync_grpc_requests_total\{code="(\w+)",method="' + method + r'",[^}]*\} ([\d.e+]+)$', text, re.M
    ):
        counts[code] += int(float(value))
    return counts


# -- open-loop pollers ----------------------------------------------------------------------------------


async def _open_loop(
    host: str, port: int, paths: list[str], interval: float, seconds: float, timeout: float, seed: int,
    pids: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(seed)
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode() for p in paths]
    idle: list[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = [[] for _ in paths]
    connecting = asyncio.Semaphore(50)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with connecting:
            return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)

    for i, conn in enumerate(await asyncio.gather(*(connect() for _ in paths))):
        idle[i].append(conn)  # one keep-alive connection per poller, opened before the window

    start = time.monotonic() + 0.2
    schedule: list[tuple[float, int]] = []
    for i in range(len(paths)):
        phase = rng.uniform(0, interval)
        schedule += [(start + phase + k * interval, i) for k in range(int(seconds / interval) + 1)]
    schedule = sorted(s for s in schedule if s[0] < start + seconds)
    latencies: list[float] = []  # every answer's (whatever its status) and every timeout's, from the scheduled time
    late: list[float] = []  # how late the client itself started each request (its own event loop)
    errors: Counter[str] = Counter()
    ok = extra_connections = 0

    async def one(i: int, at: float) -> None:
        """The request scheduled at `at` on poller i's idle connection, or a new one while its last is busy."""
        nonlocal ok, extra_connections
        late.append(time.monotonic() - at)
        conn = idle[i].pop() if idle[i] else None
        try:
            if conn is None:
                extra_connections += 1
                conn = await asyncio.open_connection(host, port)
            reader, writer = conn
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
                None,
            )
            if length is None:
                raise ValueError("an answer without content-length")
            await reader.readexactly(length)
        except BaseException:
            if conn is not None:
                conn[1].close()
            raise
        latencies.append(time.monotonic() - at)
        if head[9:12] == b"200":
            ok += 1
        else:
            errors[f"HTTP {head[9:12].decode(errors='replace')}"] += 1
        idle[i].append(conn)

    async def bounded(i: int, at: float) -> None:
        try:
            await asyncio.wait_for(one(i, at), max(0.0, at + timeout - time.monotonic()))
        except TimeoutError:
            errors["timeout"] += 1
            latencies.append(time.monotonic() - at)  # no answer by then: its latency is at least this
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            errors[type(exc).__name__] += 1

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    others = {name: cpu_seconds(pid) for name, pid in pids.items()}
    tasks = []
    for at, i in schedule:  # bounded: the schedule is finite
        wait = at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(bounded(i, at)))
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5)  # each is bounded by its own timeout already
    ended = time.monotonic()
    used = resource.getrusage(resource.RUSAGE_SELF)
    others = {name: cpu_seconds(pid) - others[name] for name, pid in pids.items()}
    for conns in idle:
        for _, writer in conns:
            writer.close()
    cpu = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
    ms = [lat * 1000 for lat in latencies]
    return {
        "windowStart": start,
        "windowEnd": start + seconds,
        "scheduled": len(schedule),
        "answered": len(ms) - errors["timeout"],
        "answeredOk": ok,
        "latencyMs": summary(ms),
        "clientLateMs": summary([lag * 1000 for lag in late]),
        "errors": dict(errors),
        "unfinished": sum(not t.done() for t in tasks),
        "extraConnections": extra_connections,
        "client": {
            "cpuSeconds": round(cpu, 2),
            "wallSeconds": round(ended - start, 2),
            "percentOfOneCore": round(100 * cpu / (ended - start), 1),
        },
        "cpu": {
            name: {"cpuSeconds": round(s, 2), "percentOfOneCore": round(100 * s / (ended - start), 1)}
            for name, s in others.items()
        },
    }


def open_loop_process(
    host: str, port: int, paths: list[str], interval: float, seconds: float, timeout: float, seed: int,
    pids: dict[str, int], out,
) -> None:  # fmt: skip
    """The pollers, in a process of their own (a multiprocessing target); puts their report on `out`. The CPU
    time of the processes in pids (the bridge, the server) is measured over the same window as the client's."""
    try:
        niceness = raise_priority()
        report = asyncio.run(_open_loop(host, port, paths, interval, seconds, timeout, seed, pids))
        report["client"]["niceness"] = niceness
    except BaseException as exc:  # noqa: BLE001 - reported, not lost with the process
        report = {"crashed": repr(exc)}
    out.put(report)


# -- staleness of a replica's answers -------------------------------------------------------------------

STATS_KEY = ("blocks_total", "blocks_done", "events_found", "records_total", "records_done")


def key_of_job(job: jobs_pb2.Job) -> tuple:
    """What a status poller sees change: state, progress, message, range, counts, error (no rates: a
    server may compute those at read time)."""
    return (
        job.state,
        job.progress,
        job.message,
        job.from_block,
        job.to_block,
        tuple(getattr(job.stats, f) for f in STATS_KEY),
        job.error.code,
    )


def key_of_snapshot(snapshot: dict[str, Any]) -> tuple:
    """key_of_job of a job_events snapshot (a JobRecord as a dict)."""
    stats = json_format.ParseDict(snapshot.get("stats") or {}, jobs_pb2.JobStats(), ignore_unknown_fields=True)
    return (
        jobs_pb2.JobState.Value(f"JOB_STATE_{snapshot['state'].upper()}"),
        snapshot.get("progress") or 0,
        snapshot.get("message") or "",
        snapshot.get("from_block") or 0,
        snapshot.get("to_block") or 0,
        tuple(getattr(stats, f) for f in STATS_KEY),
        snapshot.get("error_code") or "",
    )


def lag_of(sent: float, received: float, key: tuple, versions: list[tuple[int, float, tuple]]) -> float | None:
    """How far behind one answer was, in seconds; None when it matches no stored version.

    versions: the job's (version, time written, key), in version order. The answer is taken as the newest
    version with its key written before it arrived. When a newer version (with another key) had been written
    before the request was sent, the answer was stale since that newer version was written:
    lag = sent - its time; otherwise 0. key None stands for NOT_FOUND: stale since the first version.
    """
    times = [t for _, t, _ in versions]
    current = bisect.bisect_right(times, sent) - 1  # the newest version written when the request left
    arrived = bisect.bisect_right(times, received) - 1
    if key is None:  # NOT_FOUND: behind the job's first version
        return None if not versions else max(0.0, sent - times[0]) if current >= 0 else 0.0
    matches = [n for n, (_, _, k) in enumerate(versions) if k == key]
    if not matches:
        return None
    earlier = [n for n in matches if n <= arrived]
    answered = earlier[-1] if earlier else matches[0]
    if answered >= current:
        return 0.0
    return max(0.0, sent - versions[answered + 1][1])


def staleness(samples: list[dict[str, Any]], versions: dict[str, list[tuple[int, float, tuple]]]) -> dict[str, Any]:
    """Lag figures of samples ({job, sent, received, key}) against the jobs' stored versions."""
    lags: list[float] = []
    unmatched = 0
    seen: set[tuple[str, int]] = set()
    for s in samples:
        lag = lag_of(s["sent"], s["received"], s["key"], versions.get(s["job"], []))
        if lag is None:
            unmatched += 1
            continue
        lags.append(lag * 1000)
        seen.add((s["job"], s["key"]))
    stale = [lag for lag in lags if lag > 0]
    return {
        "samples": len(samples),
        "unmatched": unmatched,
        "distinctAnswers": len(seen),
        "notFoundSamples": sum(s["key"] is None for s in samples),
        "staleSamples": len(stale),
        "lagMs": {
            "max": round(max(lags), 1) if lags else None,
            **{k: v for k, v in summary(lags).items() if k != "max"},
        },
    }
