"""`make loadtest`: the status path under load (issue 14's goals, on one bridge) and job throughput with 1, 2
and 4 replicas on one PostgreSQL schema. docs/load.md tells what each figure is and how it is measured.

    .venv/bin/python bench/loadtest.py [--seconds 8] [--poll-seconds 20] [--stale-seconds 10] [--replicas 1,2,4]

Everything runs on loopback, started and stopped here: the demo devnet (anvil),
a FaultProxy (tests/fault_proxy.py) that delays every request to it by
``--rpc-delay`` s, `chainsync serve` replica(s) on fresh PostgreSQL schemas
(``postgresql://postgres@127.0.0.1:5432/test?schema=chainsync_load_<random>``,
``CHAINSYNC_LOAD_PG`` to change the server; dropped at the end), a
`chainsync bridge`, and the clients. Debian's ``wrk`` and ``h2load``
(nghttp2-client) must be installed (`make loadtest` installs them). The
clients run at niceness -5 where allowed (load_tools.CLIENT_NICE).

1. **The status path, while 4 jobs run.** One server (``--running`` workers)
   behind the slow proxy, one bridge, and a feeder that keeps ``--running``
   full syncs running (two more queued, so a freed worker takes the next at
   once). On that one bridge and server, one after the other:
   a. ``wrk -t1 -c100 -d8s --latency`` on `GET /api/blockchain/sync/status/{id}`
      (a Lua script cycling through the running jobs' ids), then on `GET /healthz`:
      requests/s, p99, and the ratio status/healthz;
   b. ``--pollers`` open-loop pollers (load_tools.open_loop_process), first on
      `/healthz` for ``--calibrate-seconds`` (what the client itself can
      measure), then each polling its job's status every ``--poll-interval`` s
      at a random phase for ``--poll-seconds``: requests/s, p50/p99/max from
      the scheduled send time, errors, and the client's own CPU time;
   c. ``h2load -c 4 -m 25 -D 8`` of gRPC `GetJob` straight to the server
      (after one GetJob with the Python stub); the server's own gRPC counters
      tell that the answers were gRPC OK;
   d. staleness: a second replica on the same schema; GetJob of every live job
      to both replicas every ``--stale-interval`` s for ``--stale-seconds``;
      each answer is matched to the version the job's writer stored
      (``job_events``), and its lag is how long a newer version had been
      written when the request was sent.
2. **Job throughput.** For each replica count, that many `chainsync serve`
   processes (``--workers`` threads each) on a schema; ``--jobs`` small jobs
   (``blocksBack`` ``--blocks-back``) started round-robin across them; jobs/s =
   jobs completed / (last end time - first create time), from the jobs' own
   timestamps. Each job's `attempts` is read back: claimed exactly once.

Every loop is bounded in count and time. Prints a table and writes
bench/load-results.json. Exits 1 when a measurement is unsound (fewer jobs
running than asked, GetJob answers that were not gRPC OK, a replica's answer
that matches no stored version, a job claimed twice); errors of an overloaded
path and goals not met are reported, not an exit code. The figures move with
the machine's load: on a shared 2-core machine the clients, the bridge, the
replicas, anvil and PostgreSQL all compete for the same cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator

import grpc
import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chainsync.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402
from load_tools import (  # noqa: E402
    CLIENT_NICE,
    CpuMeter,
    grpc_counts,
    grpc_frame,
    key_of_job,
    key_of_snapshot,
    missing_tools,
    open_loop_process,
    run_h2load,
    run_wrk,
    staleness,
    tool_version,
)

from tests.fault_proxy import FaultProxy, Faults  # noqa: E402
from tests.processes import free_port, grpc_server, rest_bridge  # noqa: E402

PG_URL = os.environ.get("CHAINSYNC_LOAD_PG", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).resolve().parent / "load-results.json"
TERMINAL = {jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
STATUS_PATH = "/api/blockchain/sync/status/{}"
GET_JOB = "/chainsync.v1.JobService/GetJob"
SETTLE_S = 2.0  # a pause between two measurements: what one left queued is not in the next

# Today's rate: the old status path (before issue 14's change), measured on 2026-11-30 with the same commands.
BASELINE = {
    "date": "2026-11-30",
    "what": "the status path before issue 14's change, same commands on this machine",
    "grpcGetJobRequestsPerSecond": 912,
    "wrkStatusRequestsPerSecond": [887, 949],
    "wrkHealthzRequestsPerSecond": [2924, 4067],
}
GOALS = {
    "statusOverHealthz": 0.5,
    "pollP99Ms": 50.0,
    "grpcTimesBaseline": 3.0,
    "staleBoundMs": 1000.0,
}


@contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh schema: (store URL, schema name); dropped at the end, whatever happens."""
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
    """Keeps `running` jobs running, and `queued` more waiting so that a worker freed by a finished job claims
    the next at once, until stopped (or `max_s`); then cancels its unfinished jobs.

    It starts jobs by gRPC StartSync and reads their states from the store (PostgreSQL), not by GetJob: its
    looks neither add to the load measured nor wait behind it. Records how many jobs ran at each look.
    """

    def __init__(
        self, addr: str, schema: str, running: int, request: jobs_pb2.StartSyncRequest, queued: int = 2,
        max_s: float = 900,
    ) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.addr, self.target, self.queued, self.request = addr, running, queued, request
        self.states_query = sql.SQL("SELECT id, state, error_code FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(schema, "jobs")
        )
        self.running_query = sql.SQL("SELECT count(*) FROM {} WHERE state = 'running'").format(
            sql.Identifier(schema, "jobs")
        )
        self.until = time.monotonic() + max_s
        self.stop = threading.Event()
        self.ready = threading.Event()  # `running` jobs run
        self.lock = threading.Lock()
        self.states: dict[str, str] = {}  # unfinished jobs: id -> state at the last look
        self.timeline: list[tuple[float, int]] = []  # (time.monotonic(), jobs running in the store) at each look
        self.finished: Counter[str] = Counter()
        self.started = 0
        self.start_errors: Counter[str] = Counter()  # StartSync calls refused, by code
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with grpc.insecure_channel(self.addr) as channel, psycopg.connect(PG_URL, autocommit=True) as conn:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                try:
                    while not self.stop.is_set() and time.monotonic() < self.until:
                        self._look(stub, conn)
                        self.stop.wait(0.2)
                finally:
                    for job_id in self.live_ids():
                        try:
                            stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), timeout=10)
                        except grpc.RpcError:
                            pass  # finished meanwhile, or the server is going: nothing to stop
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()

    def _look(self, stub, conn) -> None:
        states: dict[str, str] = {}
        for job_id, state, error_code in conn.execute(self.states_query, (self.live_ids(),)).fetchall():
            if state in ("completed", "failed", "cancelled"):
                self.finished[f"{state} ({error_code})" if error_code else state] += 1
            else:
                states[job_id] = state
        while len(states) < self.target + self.queued:
            try:
                job_id = stub.StartSync(self.request, timeout=30).job_id
            except grpc.RpcError as exc:  # an overloaded server may refuse (RESOURCE_EXHAUSTED): the next look
                self.start_errors[exc.code().name] += 1
                break
            states[job_id] = "pending"
            self.started += 1
        running = conn.execute(self.running_query).fetchone()[0]
        with self.lock:
            self.states = states
            self.timeline.append((time.monotonic(), running))
        if sum(state == "running" for state in states.values()) >= self.target:
            self.ready.set()

    def live_ids(self) -> list[str]:
        with self.lock:
            return list(self.states)

    def running_ids(self) -> list[str]:
        with self.lock:
            return [job_id for job_id, state in self.states.items() if state == "running"]

    def running_during(self, start: float, end: float) -> dict[str, Any]:
        """Jobs running in the store at the feeder's looks between two time.monotonic() readings."""
        with self.lock:
            counts = [n for t, n in self.timeline if start <= t <= end]
        if not counts:
            return {"looks": 0}
        return {
            "looks": len(counts),
            "min": min(counts),
            "mean": round(statistics.mean(counts), 2),
            "shareAtLeastKept": round(sum(n >= self.target for n in counts) / len(counts), 3),
        }

    def completed(self) -> int:
        return self.finished["completed"]  # a completed job has no error code


def feeder_alive(feeder: Feeder) -> None:
    if feeder.error or not feeder.is_alive():
        raise RuntimeError(f"the job feeder stopped: {feeder.error!r}")


def timed(feeder: Feeder, pids: dict[str, int], measure) -> dict[str, Any]:
    """measure() under a CPU meter of pids, with the jobs that ran meanwhile."""
    done = feeder.completed()
    start = time.monotonic()
    with CpuMeter(pids) as cpu:
        row = measure()
    row["cpu"] = cpu.result
    row["jobsRunning"] = feeder.running_during(start, time.monotonic())
    row["jobsCompletedMeanwhile"] = feeder.completed() - done
    return row


def measure_wrk(bridge, feeder: Feeder, pids: dict[str, int], args) -> dict[str, Any]:
    ids = feeder.running_ids()
    paths = [STATUS_PATH.format(job_id) for job_id in ids]
    answer = httpx.get(bridge.url + paths[0], timeout=30)  # a real status first
    if answer.status_code != 200 or answer.json()["job"]["id"] != ids[0]:
        raise RuntimeError(f"the bridge's status of {ids[0]}: {answer.status_code} {answer.text[:300]}")
    status = timed(feeder, pids, lambda: run_wrk(bridge.url, paths, args.seconds, args.wrk_connections))
    status["paths"] = f"status of the {len(ids)} running jobs, in turn"
    time.sleep(SETTLE_S)
    health = timed(feeder, pids, lambda: run_wrk(bridge.url, ["/healthz"], args.seconds, args.wrk_connections))
    health["paths"] = "/healthz"
    ratio = status["requestsPerSecond"] / health["requestsPerSecond"]
    return {"status": status, "healthz": health, "ratio": round(ratio, 3)}


def measure_open_loop(bridge, feeder: Feeder, pids: dict[str, int], args, health: bool = False) -> dict[str, Any]:
    """The open-loop pollers on the running jobs' status (health: on /healthz, to see what the client can do)."""
    ids = feeder.running_ids()
    paths = [STATUS_PATH.format(ids[n % len(ids)]) for n in range(args.pollers)]
    seconds = args.calibrate_seconds if health else args.poll_seconds
    if health:
        paths = ["/healthz"] * args.pollers
    host, port = bridge.addr.rsplit(":", 1)
    ctx = multiprocessing.get_context("spawn")  # not fork: this process holds gRPC channels and threads
    queue = ctx.Queue()
    done = feeder.completed()
    client = ctx.Process(
        target=open_loop_process,
        args=(host, int(port), paths, args.poll_interval, seconds, args.poll_timeout, 14, pids, queue),
    )
    client.start()
    try:
        report = queue.get(timeout=seconds + args.poll_timeout + 120)
    finally:
        client.join(timeout=30)
        if client.is_alive():
            client.kill()
            client.join(timeout=10)
    if "crashed" in report:
        raise RuntimeError(f"the open-loop client crashed: {report['crashed']}")
    start, end = report.pop("windowStart"), report.pop("windowEnd")
    return {
        "path": "/healthz" if health else f"status of {len(ids)} running jobs",
        "pollers": args.pollers,
        "intervalSeconds": args.poll_interval,
        "seconds": seconds,
        "offeredPerSecond": round(report["scheduled"] / seconds, 1),
        "requestsPerSecond": round(report["answeredOk"] / seconds, 1),
        **report,
        "jobsRunning": feeder.running_during(start, end),
        "jobsCompletedMeanwhile": feeder.completed() - done,
    }


def measure_grpc(server, feeder: Feeder, pids: dict[str, int], args) -> dict[str, Any]:
    job_id = feeder.running_ids()[0]
    with grpc.insecure_channel(server.addr) as channel:  # one real GetJob with the Python stub first
        job = jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=30)
    if job.id != job_id:
        raise RuntimeError(f"GetJob({job_id}) answered job {job.id!r}")
    body = grpc_frame(jobs_pb2.GetJobRequest(job_id=job_id).SerializeToString())
    url = f"http://{server.addr}{GET_JOB}"
    before = grpc_counts(server.metrics_addr, "GetJob")
    row = timed(feeder, pids, lambda: run_h2load(url, body, args.seconds, args.h2load_clients, args.h2load_streams))
    codes = grpc_counts(server.metrics_addr, "GetJob")
    codes.subtract(before)
    row["grpcCodes"] = {code: n for code, n in codes.items() if n}  # the staleness probes come later
    row["stubGetJob"] = {"job": job_id, "state": jobs_pb2.JobState.Name(job.state), "progress": job.progress}
    time.sleep(SETTLE_S)
    with grpc_floor() as floor_addr:  # the same command on a GetJob that does nothing: grpc.aio's own ceiling
        floor = run_h2load(f"http://{floor_addr}{GET_JOB}", body, args.seconds, args.h2load_clients,
                           args.h2load_streams)  # fmt: skip
    row["noOpFloor"] = {"requestsPerSecond": floor["requestsPerSecond"], "command": floor["command"]}
    row["ofFloor"] = round(row["requestsPerSecond"] / floor["requestsPerSecond"], 3)
    return row


@contextmanager
def grpc_floor() -> Iterator[str]:
    """bench/grpc_floor.py on a free loopback port while the block runs; its address."""
    addr = f"127.0.0.1:{free_port()}"
    here = Path(__file__).resolve().parent
    proc = subprocess.Popen([sys.executable, str(here / "grpc_floor.py"), addr], cwd=here.parent)
    try:
        with grpc.insecure_channel(addr) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield addr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure_staleness(devnet_rpc: str, deployment_path, db: str, schema: str, server, feeder: Feeder, args) -> dict:
    """A second replica on the schema; GetJob of the live jobs to both replicas; each answer's lag behind the
    versions the job's writer stored."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        jobs = sql.Identifier(schema, "jobs")
        first_owner = None  # the only replica so far: its runner's owner id, from a job it runs
        for _ in range(100):  # bounded: 10 s at most
            row = conn.execute(sql.SQL("SELECT owner FROM {} WHERE owner IS NOT NULL LIMIT 1").format(jobs)).fetchone()
            if row:
                first_owner = row[0]
                break
            time.sleep(0.1)
        if first_owner is None:
            raise RuntimeError(f"no job runs on the first replica (the feeder's jobs: {dict(feeder.finished)})")
        owners_query = sql.SQL("SELECT id, owner FROM {} WHERE id = ANY(%s) AND owner IS NOT NULL").format(jobs)
        with (
            grpc_server(
                rpc_url=devnet_rpc, deployment_path=deployment_path, db=db, workers=args.second_workers
            ) as second,
            ExitStack() as stack,
        ):
            stubs = {
                name: jobs_pb2_grpc.JobServiceStub(stack.enter_context(grpc.insecure_channel(addr)))
                for name, addr in (("first", server.addr), ("second", second.addr))
            }
            for stub in stubs.values():  # both answer before the window opens
                stub.GetJob(jobs_pb2.GetJobRequest(job_id=feeder.live_ids()[0]), timeout=30)
            samples: list[dict[str, Any]] = []
            runner: dict[str, str] = {}  # job -> owner id of the replica running it
            errors: Counter[str] = Counter()
            pids = {"first replica": server.proc.pid, "second replica": second.proc.pid}
            started, wall_start = time.monotonic(), time.time()
            end, next_owners, rounds = started + args.stale_seconds, 0.0, 0
            with CpuMeter(pids) as cpu:
                while time.monotonic() < end and rounds < args.stale_seconds / args.stale_interval + 1:
                    rounds += 1
                    ids = feeder.live_ids()
                    if time.monotonic() >= next_owners:
                        runner |= dict(conn.execute(owners_query, (ids,)).fetchall())
                        next_owners = time.monotonic() + 0.25
                    order = list(stubs.items()) if rounds % 2 else list(reversed(stubs.items()))
                    for job_id in ids:
                        for name, stub in order:
                            sent = time.time()  # the wall clock: job_events' times are the writer's time.time()
                            try:
                                key = key_of_job(stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10))
                            except grpc.RpcError as exc:
                                if exc.code() != grpc.StatusCode.NOT_FOUND:
                                    errors[f"{name}: {exc.code().name}"] += 1
                                    continue
                                key = None  # not known there yet: behind the job's first version
                            received = time.time()
                            samples.append({"job": job_id, "replica": name, "sent": sent, "received": received,
                                            "key": key})  # fmt: skip
                    time.sleep(args.stale_interval)
            wall_end = time.time()
            sampled = sorted({s["job"] for s in samples})
            runner |= dict(conn.execute(owners_query, (sampled,)).fetchall())
        events = sql.Identifier(schema, "job_events")
        rows = conn.execute(
            sql.SQL(
                "SELECT job_id, sequence, time, snapshot FROM {} WHERE job_id = ANY(%s) ORDER BY job_id, sequence"
            ).format(events),
            (sampled,),
        ).fetchall()
    versions: dict[str, list[tuple[int, float, tuple]]] = {}
    for job_id, sequence, at, snapshot in rows:
        versions.setdefault(job_id, []).append((sequence, at, key_of_snapshot(json.loads(snapshot))))
    run_by = {job: "first" if owner == first_owner else "second" for job, owner in runner.items()}
    follower = [s for s in samples if s["job"] in run_by and s["replica"] != run_by[s["job"]]]
    owner = [s for s in samples if s["job"] in run_by and s["replica"] == run_by[s["job"]]]
    unclaimed = [s for s in samples if s["job"] not in run_by]  # still pending: no replica runs them
    written = sum(1 for job_rows in versions.values() for _, at, _ in job_rows if wall_start <= at <= wall_end)
    return {
        "seconds": args.stale_seconds,
        "intervalSeconds": args.stale_interval,
        "jobsSampled": len(sampled),
        "jobsRunBy": dict(Counter(run_by[j] for j in sampled if j in run_by)),
        "versionsWrittenMeanwhile": written,
        "follower": staleness(follower, versions),
        "owner": staleness(owner, versions),
        "unclaimed": staleness(unclaimed, versions),
        "errors": dict(errors),
        "cpu": cpu.result,
        "jobsRunning": feeder.running_during(started, started + args.stale_seconds),
    }


def status_section(devnet, args) -> dict[str, Any]:
    """The status path on one server and one bridge while `args.running` full syncs run behind a slow proxy."""
    out: dict[str, Any] = {"rpcDelaySeconds": args.rpc_delay, "jobsKeptRunning": args.running}
    with (
        pg_schema() as (db, schema),
        FaultProxy(devnet.url, Faults(delay_s=args.rpc_delay)) as proxy,
        grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db, workers=args.running) as server,
        rest_bridge(server.addr) as bridge,
    ):
        # Requests still in the proxy's delay when the server stops find its client closed: not worth a traceback.
        proxy._server.handle_error = lambda request, client_address: None
        feeder = Feeder(server.addr, schema, args.running, jobs_pb2.StartSyncRequest(is_full_sync=True))
        feeder.start()
        try:
            if not feeder.ready.wait(60) or feeder.error:
                raise RuntimeError(f"{args.running} jobs did not start running: {feeder.error!r}")
            pids = {"server": server.proc.pid, "bridge": bridge.proc.pid}
            print(f"  status vs /healthz: wrk, {args.seconds:g} s each ...", flush=True)
            out["wrk"] = measure_wrk(bridge, feeder, pids, args)
            feeder_alive(feeder)
            if args.calibrate_seconds:
                time.sleep(SETTLE_S)
                print(f"  the same pollers on /healthz (the client's own limit), {args.calibrate_seconds:g} s ...",
                      flush=True)  # fmt: skip
                out["openLoopHealthz"] = measure_open_loop(bridge, feeder, pids, args, health=True)
                feeder_alive(feeder)
            time.sleep(SETTLE_S)
            print(f"  {args.pollers:,} open-loop pollers, every {args.poll_interval:g} s, {args.poll_seconds:g} s ...",
                  flush=True)  # fmt: skip
            out["openLoop"] = measure_open_loop(bridge, feeder, pids, args)
            feeder_alive(feeder)
            time.sleep(SETTLE_S)
            print(f"  gRPC GetJob: h2load, {args.seconds:g} s ...", flush=True)
            out["grpc"] = measure_grpc(server, feeder, pids, args)
            feeder_alive(feeder)
            print(f"  staleness of a second replica, {args.stale_seconds:g} s ...", flush=True)
            time.sleep(SETTLE_S)
            try:  # it reads the store's own tables: a failure here leaves the other figures standing
                out["staleness"] = measure_staleness(
                    proxy.url, devnet.deployment_path, db, schema, server, feeder, args
                )
            except (RuntimeError, psycopg.Error, grpc.RpcError) as exc:
                out["staleness"] = {"failed": repr(exc)}
            feeder_alive(feeder)
        finally:
            feeder.stop.set()
            feeder.join(timeout=60)
        out["feeder"] = {
            "started": feeder.started,
            "startRefused": dict(feeder.start_errors),
            "finished": dict(feeder.finished),
        }
    return out


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


def goals(status: dict[str, Any]) -> list[dict[str, Any]]:
    wrk, polls, rpc, stale = status["wrk"], status["openLoop"], status["grpc"], status["staleness"]
    grpc_goal = GOALS["grpcTimesBaseline"] * BASELINE["grpcGetJobRequestsPerSecond"]
    lag = stale["follower"]["lagMs"]["max"] if "follower" in stale else None
    return [
        {
            "goal": f"status ÷ /healthz requests/s (wrk, one bridge) >= {GOALS['statusOverHealthz']}",
            "value": wrk["ratio"],
            "met": wrk["ratio"] >= GOALS["statusOverHealthz"],
        },
        {
            "goal": f"{polls['pollers']:,} open-loop pollers every {polls['intervalSeconds']:g} s while "
            f"{status['jobsKeptRunning']} jobs run: p99 < {GOALS['pollP99Ms']:g} ms, no errors",
            "value": polls["latencyMs"]["p99"],
            "met": polls["latencyMs"]["p99"] is not None
            and polls["latencyMs"]["p99"] < GOALS["pollP99Ms"]
            and not polls["errors"]
            and not polls["unfinished"],
        },
        {
            "goal": f"gRPC GetJob (h2load) >= {GOALS['grpcTimesBaseline']:g} x today's "
            f"{BASELINE['grpcGetJobRequestsPerSecond']} = {grpc_goal:,.0f} requests/s",
            "value": rpc["requestsPerSecond"],
            "met": rpc["requestsPerSecond"] >= grpc_goal,
        },
        {
            "goal": f"a second replica's GetJob at most {GOALS['staleBoundMs']:g} ms behind the writer (max lag)",
            "value": lag,
            "met": lag is not None and lag <= GOALS["staleBoundMs"],
        },
    ]


def checks(status: dict[str, Any] | None, runs: list[dict], args) -> list[str]:
    """What makes the run's figures unsound: each a sentence (empty: sound)."""
    bad: list[str] = []
    if status:
        windows = {
            "wrk status": status["wrk"]["status"],
            "wrk /healthz": status["wrk"]["healthz"],
            "open-loop pollers": status["openLoop"],
            "h2load GetJob": status["grpc"],
            "staleness": status["staleness"],
        }
        for name, row in windows.items():
            if "failed" not in row and row["jobsRunning"].get("shareAtLeastKept", 0) < 0.9:
                bad.append(f"{name}: {args.running} jobs were not running most of the time ({row['jobsRunning']})")
        # Errors of wrk and of the pollers are results (an overloaded path), reported and failing the goal.
        rpc = status["grpc"]
        requests = rpc["requests"]
        in_flight = args.h2load_clients * args.h2load_streams  # cancelled when h2load stops
        codes = rpc["grpcCodes"]
        if (
            requests["failed"] or requests["errored"] or requests["timeout"]
            or rpc["http2xx"] != requests["succeeded"]
            or codes.get("OK", 0) < requests["succeeded"]
            or set(codes) - {"OK", "CANCELLED"}
            or codes.get("CANCELLED", 0) > in_flight
        ):  # fmt: skip
            bad.append(f"h2load GetJob: {requests}, HTTP 2xx {rpc['http2xx']}, gRPC codes {codes}")
        stale = status["staleness"]
        if "failed" in stale:
            return [*bad, f"staleness: {stale['failed']}"]  # the rest of its checks need its figures
        unmatched = sum(stale[role]["unmatched"] for role in ("follower", "owner", "unclaimed"))
        if stale["errors"] or unmatched:
            bad.append(f"staleness: errors {stale['errors']}, {unmatched} answers matching no stored version")
        if not stale["follower"]["samples"]:
            bad.append("staleness: no answer from a replica that did not run the job")
    for r in runs:
        if r["attempts"] != {"1": r["jobs"]}:
            bad.append(f"throughput, {r['replicas']} replicas: claims {r['attempts']}")
    return bad


def fmt(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    status = report.get("statusPath")
    if status:
        wrk, polls, rpc, stale = status["wrk"], status["openLoop"], status["grpc"], status["staleness"]
        cal = status.get("openLoopHealthz")
        base = BASELINE
        goal = report["goals"]

        def yes(n: int) -> str:
            return "**met**" if goal[n]["met"] else "**not met**"

        lines += [
            f"| status path, {status['jobsKeptRunning']} jobs running | this run | stated baseline, old code "
            f"({base['date']}) | goal | |",
            "| --- | --- | --- | --- | --- |",
            f"| bridge `GET …/status/{{id}}`, wrk -t1 -c{report['settings']['wrk_connections']} "
            f"-d{report['settings']['seconds']:g}s | {fmt(wrk['status']['requestsPerSecond'])} req/s, "
            f"p99 {fmt(wrk['status']['latencyMs'].get('p99'), 1)} ms "
            f"| {base['wrkStatusRequestsPerSecond'][0]:,}–{base['wrkStatusRequestsPerSecond'][1]:,} req/s | | |",
            f"| bridge `GET /healthz`, same | {fmt(wrk['healthz']['requestsPerSecond'])} req/s, "
            f"p99 {fmt(wrk['healthz']['latencyMs'].get('p99'), 1)} ms "
            f"| {base['wrkHealthzRequestsPerSecond'][0]:,}–{base['wrkHealthzRequestsPerSecond'][1]:,} req/s | | |",
            f"| status ÷ healthz | {wrk['ratio']:.2f} "
            f"| {base['wrkStatusRequestsPerSecond'][0] / base['wrkHealthzRequestsPerSecond'][1]:.2f}–"
            f"{base['wrkStatusRequestsPerSecond'][1] / base['wrkHealthzRequestsPerSecond'][0]:.2f} "
            f"| ≥ {GOALS['statusOverHealthz']} | {yes(0)} |",
            f"| {polls['pollers']:,} open-loop pollers, each every {polls['intervalSeconds']:g} s, "
            f"{polls['seconds']:g} s | {fmt(polls['offeredPerSecond'])} req/s offered, "
            f"{fmt(polls['requestsPerSecond'])} answered 200; p50 {fmt(polls['latencyMs']['p50'], 1)}"
            f" / p99 {fmt(polls['latencyMs']['p99'], 1)} / max {fmt(polls['latencyMs']['max'], 1)} ms, "
            f"{sum(polls['errors'].values()) + polls['unfinished']:,} errors; client CPU "
            f"{polls['client']['percentOfOneCore']:.0f} % of a core | not measured "
            f"| p99 < {GOALS['pollP99Ms']:g} ms | {yes(1)} |",
            *(
                [
                    f"| the same pollers on `/healthz` ({cal['seconds']:g} s: the client's own limit) "
                    f"| {fmt(cal['requestsPerSecond'])} answered 200; p50 {fmt(cal['latencyMs']['p50'], 1)} / "
                    f"p99 {fmt(cal['latencyMs']['p99'], 1)} / max {fmt(cal['latencyMs']['max'], 1)} ms, "
                    f"{sum(cal['errors'].values()):,} errors; client CPU {cal['client']['percentOfOneCore']:.0f} % "
                    "of a core | | | |"
                ]
                if cal
                else []
            ),
            f"| gRPC `GetJob` to the server, h2load -c {report['settings']['h2load_clients']} "
            f"-m {report['settings']['h2load_streams']} -D {report['settings']['seconds']:g} "
            f"| {fmt(rpc['requestsPerSecond'])} req/s, mean {fmt(rpc['latencyMs'].get('mean'), 1)} ms, all gRPC OK "
            f"| {base['grpcGetJobRequestsPerSecond']:,} req/s "
            f"| ≥ {GOALS['grpcTimesBaseline'] * base['grpcGetJobRequestsPerSecond']:,.0f} req/s | {yes(2)} |",
            *(
                [
                    f"| the same h2load on a GetJob that does nothing (`bench/grpc_floor.py`: grpc.aio's own ceiling "
                    f"here) | {fmt(rpc['noOpFloor']['requestsPerSecond'])} req/s; the server's GetJob at "
                    f"{rpc['ofFloor']:.2f} of it | | | |"
                ]
                if rpc.get("noOpFloor")
                else []
            ),
            "| second replica's `GetJob` behind the writer, max (p99) | "
            + (
                f"failed: {stale['failed']}"
                if "failed" in stale
                else f"{fmt(stale['follower']['lagMs']['max'], 1)} ({fmt(stale['follower']['lagMs']['p99'], 1)}) ms "
                f"over {stale['follower']['samples']:,} answers, {stale['versionsWrittenMeanwhile']} versions written"
            )
            + f" | not measured | ≤ {GOALS['staleBoundMs']:,.0f} ms (stated bound) | {yes(3)} |",
            "",
        ]
    runs = report.get("jobThroughput") or []
    if runs:
        lines += [
            "| replicas (one PostgreSQL schema) | jobs | completed | seconds | jobs/s | median job s | claimed once |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in runs:
            once = "yes" if r["attempts"] == {"1": r["jobs"]} else f"no: {r['attempts']}"
            lines.append(
                f"| {r['replicas']} | {r['jobs']} | {r['states'].get('JOB_STATE_COMPLETED', 0)} "
                f"| {r.get('seconds', '-')} | {r.get('jobsPerSecond', '-')} | {r.get('medianJobSeconds', '-')} "
                f"| {once} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="each wrk and h2load run")
    parser.add_argument("--wrk-connections", type=int, default=100)
    parser.add_argument("--h2load-clients", type=int, default=4)
    parser.add_argument("--h2load-streams", type=int, default=25, help="concurrent streams per h2load client")
    parser.add_argument("--pollers", type=int, default=1000, help="open-loop pollers")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between one poller's requests")
    parser.add_argument("--poll-seconds", type=float, default=20.0, help="the open-loop pollers' window")
    parser.add_argument("--poll-timeout", type=float, default=10.0, help="seconds one poll may take")
    parser.add_argument("--calibrate-seconds", type=float, default=10.0,
                        help="the same pollers on /healthz first, to show the client's own limit (0: skip)")  # fmt: skip
    parser.add_argument("--stale-seconds", type=float, default=10.0, help="the staleness sampling window")
    parser.add_argument("--stale-interval", type=float, default=0.05, help="pause between sampling rounds")
    parser.add_argument("--second-workers", type=int, default=1, help="CHAINSYNC_WORKERS of the second replica")
    parser.add_argument("--running", type=int, default=4, help="full syncs kept running during the status path")
    parser.add_argument("--rpc-delay", type=float, default=1.0, help="seconds the proxy adds to each RPC request")
    parser.add_argument("--replicas", default="1,2,4", help="comma-separated replica counts ('' for none)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs per replica count")
    parser.add_argument("--blocks-back", type=int, default=200, help="range of each throughput job")
    parser.add_argument("--workers", type=int, default=2, help="CHAINSYNC_WORKERS of each throughput replica")
    parser.add_argument("--job-timeout", type=float, default=120.0, help="seconds a throughput batch may take")
    parser.add_argument("--skip-status", action="store_true", help="only the job throughput")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.replicas = [int(n) for n in args.replicas.split(",") if n]
    if not args.skip_status and missing_tools():
        print(f"loadtest: missing {', '.join(missing_tools())}; `make loadtest` installs them", file=sys.stderr)
        return 2

    from devnet.command import open_devnet

    began, load_before = time.monotonic(), os.getloadavg()
    print(f"loadtest: {os.cpu_count()} cores, load average {load_before[0]:.2f}; figures vary with the load",
          flush=True)  # fmt: skip
    status, runs = None, []
    with open_devnet(Path(".devnet"), "demo", free_port()) as devnet:
        print(f"  demo devnet at {devnet.url}", flush=True)
        if not args.skip_status:
            status = status_section(devnet, args)
        if args.replicas:
            with pg_schema() as (db, schema):
                for replicas in args.replicas:
                    print(f"  throughput: {replicas} replica(s), {args.jobs} jobs ...", flush=True)
                    runs.append(throughput_run(devnet, db, schema, replicas, args))
    runtime = time.monotonic() - began
    load_after = os.getloadavg()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            **({} if args.skip_status else {"wrk": tool_version("wrk"), "h2load": tool_version("h2load")}),
        },
        "loadAverageBefore": [round(x, 2) for x in load_before],
        "loadAverageAfter": [round(x, 2) for x in load_after],
        "runtimeSeconds": round(runtime, 1),
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"clientNice": CLIENT_NICE},
        "note": "One run on a shared machine: the clients, bridge, replicas, anvil and PostgreSQL share its cores, "
        "so the figures vary with the load. Load averages: 1, 5 and 15 minutes.",
        "baseline": BASELINE,
    }
    if status:
        report["statusPath"] = status
        report["goals"] = goals(status)
    report["jobThroughput"] = runs
    report["unsound"] = checks(status, runs, args)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(report))
    for g in report.get("goals", []):
        print(f"  goal {'met' if g['met'] else 'NOT met'}: {g['goal']} (this run: {g['value']})")
    for problem in report["unsound"]:
        print(f"  UNSOUND: {problem}")
    print(
        f"\n{report['date']}, {runtime:.0f} s, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
        f"Figures vary with the machine's load. Written to {args.out}."
    )
    return 1 if report["unsound"] else 0


if __name__ == "__main__":
    sys.exit(main())
