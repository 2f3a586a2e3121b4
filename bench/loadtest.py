"""`make loadtest`: status polls under load, and job throughput with 1, 2 and 4 replicas on one PostgreSQL schema.

    .venv/bin/python bench/loadtest.py [--seconds 8] [--pollers 100,1000] [--replicas 1,2,4] [--jobs 40]

Everything runs on loopback, started and stopped here: the demo devnet (anvil),
`chainsync serve` replica(s) on a fresh PostgreSQL schema
(``postgresql://postgres@127.0.0.1:5432/test?schema=chainsync_load_<random>``,
``CHAINSYNC_LOAD_PG`` to change the server; the schema is dropped at the end),
a `chainsync bridge`, and the clients, in ``--procs`` processes of their own.

1. **Status polls while jobs run.** One replica and a bridge; a feeder keeps
   ``--inflight`` full syncs of the demo chain queued or running the whole time.
   N pollers (asyncio tasks, closed loop: the next request as soon as the answer
   is in) poll the status of the feeder's first jobs for ``--seconds``, first
   through the bridge (`GET /api/blockchain/sync/status/{id}`, one keep-alive
   connection per poller, `bench/bridge_load.py`'s poller), then by gRPC GetJob
   straight to the server (one HTTP/2 channel per 50 pollers).
2. **Job throughput.** For each replica count, that many `chainsync serve`
   processes (``--workers`` threads each) on the schema; ``--jobs`` small jobs
   (``blocksBack`` ``--blocks-back``) started round-robin across them; jobs/s =
   jobs completed / (last end time - first create time), from the jobs' own
   timestamps. Each job's `attempts` is read back: claimed exactly once.

Every loop is bounded by a deadline. Prints a table and writes
bench/load-results.json. The figures move with the machine's load: on a shared
2-core machine the clients, the bridge, the replicas, anvil and PostgreSQL all
compete for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterator

import grpc
import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bridge_load import percentile, poller  # noqa: E402
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402

from tests.processes import free_port, grpc_server, rest_bridge  # noqa: E402

PG_URL = os.environ.get("CHAINSYNC_LOAD_PG", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).resolve().parent / "load-results.json"
TERMINAL = {jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
POLLERS_PER_CHANNEL = 50
WARMUP_S = 5.0  # client processes start (spawn) and connect before the measured window opens


@contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh schema for the run: (store URL, schema name); dropped at the end, whatever happens."""
    schema = f"chainsync_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{PG_URL}?schema={schema}", schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def seconds_of(ts) -> float:
    return ts.seconds + ts.nanos / 1e9


class Feeder(threading.Thread):
    """Keeps `inflight` jobs queued or running until stopped: the "while jobs run" of the poll figures."""

    def __init__(self, addr: str, inflight: int, request: jobs_pb2.StartSyncRequest) -> None:
        super().__init__(daemon=True)
        self.addr, self.inflight, self.request = addr, inflight, request
        self.stop = threading.Event()
        self.first_ids: list[str] = []
        self.ready = threading.Event()
        self.finished: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with grpc.insecure_channel(self.addr) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                live: list[str] = []
                while not self.stop.is_set():
                    for job_id in list(live):
                        job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=30)
                        if job.state in TERMINAL:
                            live.remove(job_id)
                            self.finished[jobs_pb2.JobState.Name(job.state)] += 1
                    while len(live) < self.inflight:
                        live.append(stub.StartSync(self.request, timeout=30).job_id)
                        if len(self.first_ids) < self.inflight:
                            self.first_ids.append(live[-1])
                    self.ready.set()
                    self.stop.wait(0.2)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()

    def completed(self) -> int:
        return self.finished["JOB_STATE_COMPLETED"]


async def bridge_clients(url: str, job_ids: list[str], pollers: int, start: float, deadline: float):
    parsed = httpx.URL(url)
    latencies: list[float] = []
    outcomes = await asyncio.gather(
        *(
            poller(
                parsed.host,
                parsed.port,
                f"/api/blockchain/sync/status/{job_ids[i % len(job_ids)]}",
                deadline,
                0.0,
                latencies,
                start,
            )
            for i in range(pollers)
        ),
        return_exceptions=True,
    )
    errors = Counter("non-200" if isinstance(o, int) else type(o).__name__ for o in outcomes if o)
    return latencies, dict(errors)


async def grpc_clients(addr: str, job_ids: list[str], pollers: int, start: float, deadline: float):
    channels = [grpc.aio.insecure_channel(addr) for _ in range(-(-pollers // POLLERS_PER_CHANNEL))]
    await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
    stubs = [jobs_pb2_grpc.JobServiceStub(c) for c in channels]
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def one(n: int) -> None:
        stub = stubs[n % len(stubs)]
        request = jobs_pb2.GetJobRequest(job_id=job_ids[n % len(job_ids)])
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                await stub.GetJob(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(*(one(n) for n in range(pollers)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return latencies, dict(errors)


def client_process(kind: str, target: str, job_ids: list[str], pollers: int, start: float, deadline: float, out):
    clients = bridge_clients if kind == "bridge" else grpc_clients
    try:
        latencies, errors = asyncio.run(clients(target, job_ids, pollers, start, deadline))
    except BaseException as exc:  # noqa: BLE001 - reported, not lost with the process
        latencies, errors = [], {f"client crashed: {exc!r}": 1}
    out.put((latencies, errors))


def measure_polls(kind: str, target: str, job_ids: list[str], pollers: int, seconds: float, procs: int) -> dict:
    """N pollers over `procs` spawned processes, all polling in the same window of `seconds`."""
    ctx = multiprocessing.get_context("spawn")  # not fork: this process holds gRPC channels
    queue = ctx.Queue()
    shares = [pollers // procs + (i < pollers % procs) for i in range(procs)]
    start = time.monotonic() + WARMUP_S
    deadline = start + seconds
    workers = [
        ctx.Process(target=client_process, args=(kind, target, job_ids, n, start, deadline, queue)) for n in shares if n
    ]
    for p in workers:
        p.start()
    results = []
    try:
        for _ in workers:
            results.append(queue.get(timeout=WARMUP_S + seconds + 120))
    finally:
        for p in workers:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    ms = [lat * 1000 for lats, _ in results for lat in lats]
    errors: Counter[str] = Counter()
    for _, errs in results:
        errors.update(errs)
    return {
        "path": "bridge GET status" if kind == "bridge" else "gRPC GetJob",
        "pollers": pollers,
        "seconds": seconds,
        "requests": len(ms),
        "requestsPerSecond": round(len(ms) / seconds, 1),
        "latencyMs": {
            "p50": round(statistics.median(ms), 2) if ms else None,
            "p99": round(percentile(ms, 99), 2) if ms else None,
            "max": round(max(ms), 2) if ms else None,
        },
        "errors": dict(errors),
    }


def poll_phase(devnet, db: str, args) -> list[dict]:
    rows = []
    full_sync = jobs_pb2.StartSyncRequest(is_full_sync=True)
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, workers=args.workers) as server:
        with rest_bridge(server.addr) as bridge:
            feeder = Feeder(server.addr, args.inflight, full_sync)
            feeder.start()
            try:
                if not feeder.ready.wait(60) or feeder.error:
                    raise RuntimeError(f"the job feeder did not start: {feeder.error!r}")
                job_ids = list(feeder.first_ids)
                for kind, target in (("bridge", bridge.url), ("grpc", server.addr)):
                    for pollers in args.pollers:
                        done_before = feeder.completed()
                        print(f"  polls: {kind}, {pollers} pollers, {args.seconds:g} s ...", flush=True)
                        row = measure_polls(kind, target, job_ids, pollers, args.seconds, args.procs)
                        row["jobsCompletedMeanwhile"] = feeder.completed() - done_before
                        rows.append(row)
                        if feeder.error:
                            raise RuntimeError(f"the job feeder failed: {feeder.error!r}")
            finally:
                feeder.stop.set()
                feeder.join(timeout=60)
            for row in rows:
                row["feederJobs"] = dict(feeder.finished)
    return rows


def throughput_run(devnet, db: str, schema: str, replicas: int, args) -> dict:
    """`args.jobs` small jobs across `replicas` servers on one schema; jobs/s from the jobs' own timestamps."""
    request = jobs_pb2.StartSyncRequest(blocks_back=args.blocks_back)
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, workers=args.workers)
            )
            for _ in range(replicas)
        ]
        stubs = [jobs_pb2_grpc.JobServiceStub(stack.enter_context(grpc.insecure_channel(s.addr))) for s in servers]
        ids = [stubs[n % replicas].StartSync(request, timeout=30).job_id for n in range(args.jobs)]
        final: dict[str, jobs_pb2.Job] = {}
        deadline = time.monotonic() + args.job_timeout
        while len(final) < len(ids) and time.monotonic() < deadline:
            for job_id in ids:
                if job_id not in final:
                    job = stubs[0].GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=30)
                    if job.state in TERMINAL:
                        final[job_id] = job
            time.sleep(0.2)
    with psycopg.connect(PG_URL) as conn:
        query = sql.SQL("SELECT attempts, count(*) FROM {}.jobs WHERE id = ANY(%s) GROUP BY attempts").format(
            sql.Identifier(schema)
        )
        attempts = {str(a): n for a, n in conn.execute(query, (ids,)).fetchall()}
    completed = [j for j in final.values() if j.state == jobs_pb2.JOB_STATE_COMPLETED]
    states = Counter(jobs_pb2.JobState.Name(j.state) for j in final.values())
    states["unfinished at the deadline"] = len(ids) - len(final)
    row = {
        "replicas": replicas,
        "workersPerReplica": args.workers,
        "jobs": len(ids),
        "blocksBack": args.blocks_back,
        "states": {k: v for k, v in states.items() if v},
        "attempts": attempts,
    }
    if completed:
        first = min(seconds_of(j.create_time) for j in final.values())
        last = max(seconds_of(j.end_time) for j in completed)
        row |= {
            "seconds": round(last - first, 2),
            "jobsPerSecond": round(len(completed) / (last - first), 2),
            "medianJobSeconds": round(
                statistics.median(seconds_of(j.end_time) - seconds_of(j.start_time) for j in completed), 3
            ),
        }
    return row


def table(polls: list[dict], runs: list[dict]) -> str:
    lines = [
        "| status polls (jobs running) | pollers | requests/s | p50 ms | p99 ms | errors | jobs done meanwhile |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in polls:
        errors = sum(r["errors"].values())
        lines.append(
            f"| {r['path']} | {r['pollers']:,} | {r['requestsPerSecond']:,.0f} | {r['latencyMs']['p50']} "
            f"| {r['latencyMs']['p99']} | {errors} | {r['jobsCompletedMeanwhile']} |"
        )
    lines += [
        "",
        "| replicas (one PostgreSQL schema) | jobs | completed | seconds | jobs/s | median job s | claimed once |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in runs:
        once = "yes" if r["attempts"] == {"1": r["jobs"]} else f"no: {r['attempts']}"
        lines.append(
            f"| {r['replicas']} | {r['jobs']} | {r['states'].get('JOB_STATE_COMPLETED', 0)} | {r.get('seconds', '-')} "
            f"| {r.get('jobsPerSecond', '-')} | {r.get('medianJobSeconds', '-')} | {once} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window of each poll run")
    parser.add_argument("--pollers", default="100,1000", help="comma-separated poller counts")
    parser.add_argument("--procs", type=int, default=2, help="client processes the pollers are spread over")
    parser.add_argument("--inflight", type=int, default=4, help="jobs the feeder keeps queued or running")
    parser.add_argument("--replicas", default="1,2,4", help="comma-separated replica counts")
    parser.add_argument("--jobs", type=int, default=100, help="jobs per replica count")
    parser.add_argument("--blocks-back", type=int, default=200, help="range of each throughput job")
    parser.add_argument("--workers", type=int, default=2, help="CHAINSYNC_WORKERS of each replica")
    parser.add_argument("--job-timeout", type=float, default=120.0, help="seconds a batch may take")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.pollers = [int(n) for n in args.pollers.split(",") if n]
    args.replicas = [int(n) for n in args.replicas.split(",") if n]

    from devnet.command import open_devnet

    began, load_before = time.monotonic(), os.getloadavg()
    print(
        f"loadtest: {os.cpu_count()} cores, load average {load_before[0]:.2f}; figures vary with the load", flush=True
    )
    with open_devnet(Path(".devnet"), "demo", free_port()) as devnet, pg_schema() as (db, schema):
        print(f"  demo devnet at {devnet.url}, store schema {schema}", flush=True)
        polls = poll_phase(devnet, db, args)
        runs = []
        for replicas in args.replicas:
            print(f"  throughput: {replicas} replica(s), {args.jobs} jobs ...", flush=True)
            runs.append(throughput_run(devnet, db, schema, replicas, args))
    runtime = time.monotonic() - began
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "loadAverage1mBefore": round(load_before[0], 2),
        "loadAverage1mAfter": round(os.getloadavg()[0], 2),
        "runtimeSeconds": round(runtime, 1),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "note": "One run on a shared machine: the clients, bridge, replicas, anvil and PostgreSQL share its cores, "
        "so the figures vary with the load.",
        "statusPolls": polls,
        "jobThroughput": runs,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(polls, runs))
    print(
        f"\n{report['date']}, {runtime:.0f} s, load average {load_before[0]:.2f} before, "
        f"{report['loadAverage1mAfter']:.2f} after. Figures vary with the machine's load. Written to {args.out}."
    )
    bad = any(sum(r["errors"].values()) for r in polls) or any(r["attempts"] != {"1": r["jobs"]} for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
