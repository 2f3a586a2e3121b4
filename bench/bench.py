"""`make bench`: the sync measured against its ceilings, in one run, locally and as users run it.

On the bench devnet (at least 20,000 events over at least 50,000 blocks, built
once and reloaded in seconds), over the same range (deployment to head):

  d. chainsync  a job through gRPC, StartSync to `completed`, result stored:
                with event-less changes off (d), and in the default
                configuration (`auto`: trace_filter here) (d default);
  a. ceiling    the same job's own requests, recorded by a proxy and sent
                again by a bare async client that parses JSON and decodes
                nothing, at the best concurrency it finds (bench/ceiling.py):
                a for d's requests, a default for d default's (trace_filter
                included);
  b. web3       web3.py's documented path: decoded `contract.events.X.get_logs`
                per event type in 2,000-block chunks, then `getter(id).call(
                block_identifier=to_block)` per entity;
  c. naive      the per-block loop (eth_getLogs block by block and event by
                event, decoded by web3): the dense tail of the chain timed in
                full, a sample of the sparse part timed and extrapolated.

Then the remote profile: the same chain behind tests/remote_proxy.py, a node
50 ms away that caps eth_getLogs at 2,000 blocks and answers 429 with
Retry-After above 50 requests a second: d' (the default configuration) and
a' (its recorded requests, sent again at the best concurrency within the
rate). And the demo chain's full sync through that proxy against loopback,
and against the floor its round trips set: loopback time plus the round
trips it made one after another (each sent after the answer to the one
before it, as the proxy saw them) at 50 ms each.

Prints the tables and writes bench/results.json. Ratios compare runs made
here, one after the other, on the same machine; absolute times are not the point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import ceiling  # noqa: E402
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402

from devnet.command import open_devnet  # noqa: E402
from server.engine.contracts import entity_kinds, load_abi  # noqa: E402
from tests.processes import grpc_server  # noqa: E402
from tests.remote_proxy import Limits, RemoteProxy  # noqa: E402

REMOTE = Limits(rtt_s=0.050, rate=50.0, max_logs_range=2_000)  # a hosted provider 50 ms away
TRANSPARENT = Limits(rtt_s=0.0, rate=0.0, max_logs_range=None)  # records requests, changes nothing

CHUNK = 2_000
BUSY_LOAD = 0.8  # a 1-minute load average above this before the run: the figures are not those of a quiet machine
REFERENCE_LOOP = 2_000_000  # iterations of the pure-Python loop that says how fast this machine's CPU is
KINDS = {"proposals": "Proposals", "petitions": "Petitions", "reports": "Reports"}


def post(client: httpx.Client, url: str, payload: Any) -> Any:
    response = client.post(url, content=orjson.dumps(payload), headers={"content-type": "application/json"})
    response.raise_for_status()
    return orjson.loads(response.content)


def run_web3(url: str, addresses: dict[str, str], start: int, end: int) -> dict[str, Any]:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))
    kinds = entity_kinds()
    t0 = time.perf_counter()
    events = 0
    ids: dict[str, set[int]] = {k: set() for k in KINDS}
    for kind, name in KINDS.items():
        contract = w3.eth.contract(address=addresses[name], abi=load_abi(name))
        for event_name, _ in kinds[kind].topics.values():
            event = getattr(contract.events, event_name)
            for lo in range(start, end + 1, CHUNK):
                for entry in event.get_logs(from_block=lo, to_block=min(end, lo + CHUNK - 1)):
                    events += 1
                    ids[kind].add(next(iter(entry["args"].values())))
        getter = getattr(contract.functions, kinds[kind].declared.getter)
        for entity_id in sorted(ids[kind]):
            getter(entity_id).call(block_identifier=end)
    return {"seconds": time.perf_counter() - t0, "events": events}


def run_naive(
    url: str, addresses: dict[str, str], start: int, end: int, sample_blocks: int, dense_blocks: int
) -> dict[str, Any]:
    """The per-block loop: every block of the dense tail (where most events are) timed in full,
    plus sample_blocks of the sparse part timed and extrapolated to all of it."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))
    kinds = entity_kinds()
    contracts = {name: w3.eth.contract(address=addresses[name], abi=load_abi(name)) for name in KINDS.values()}

    def loop(first: int, last: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        events = 0
        for block in range(first, last + 1):
            for kind, name in KINDS.items():
                for event_name, _ in kinds[kind].topics.values():
                    event = getattr(contracts[name].events, event_name)
                    events += len(event.get_logs(from_block=block, to_block=block))
        return time.perf_counter() - t0, events

    dense_from = max(start, end - dense_blocks + 1)
    dense_seconds, dense_events = loop(dense_from, end)
    sparse_blocks = dense_from - start
    sample = min(sample_blocks, sparse_blocks)
    sample_seconds, sample_events = loop(start, start + sample - 1) if sample else (0.0, 0)
    seconds = dense_seconds + (sample_seconds * sparse_blocks / sample if sample else 0.0)
    return {"seconds": seconds, "timed_blocks": dense_blocks + sample, "timed_events": dense_events + sample_events}


@contextmanager
def chainsync_server(devnet, tmp: Path, silent: str, proxy: RemoteProxy | None = None) -> Iterator[Any]:
    """A server of its own for full syncs with event-less changes ``silent`` (through proxy when given); with
    a proxy, ready once the server's start-up trace probe went through it."""
    with grpc_server(
        rpc_url=proxy.url if proxy else devnet.url,
        deployment_path=devnet.deployment_path,
        db=tmp / f"jobs-{silent}-{time.monotonic_ns()}.db",
        workers=1,
        extra_env={"CHAINSYNC_SILENT_CHANGES": silent, "CHAINSYNC_LOG_CHUNK": str(CHUNK)},
    ) as server:
        if proxy is not None and silent == "auto":
            deadline = time.monotonic() + 10
            while "trace_filter" not in proxy.counts.methods and time.monotonic() < deadline:
                time.sleep(0.01)
        yield server


class TimedJobs:
    """Full syncs on one server, one at a time (``run``), and their figures: the median time of those after
    the first ``warm_up`` (a new server's first jobs make its connections and learn the node's limits)."""

    def __init__(self, server: Any, proxy: RemoteProxy | None = None, warm_up: int = 0) -> None:
        self.server, self.proxy, self.warm_up = server, proxy, warm_up
        self.times: list[float] = []
        self.in_a_row: list[int] = []  # through a proxy: each job's round trips in a row

    def run(self) -> None:
        if self.proxy is not None:
            self.proxy.reset()  # its counts and records start with the job
        self.job, seconds, self.peak_kb = _timed_job(self.server)
        self.times.append(seconds)
        if self.proxy is not None:
            self.in_a_row.append(self.proxy.round_trips_in_a_row())

    def figures(self) -> dict[str, Any]:
        counted = self.times[self.warm_up :]
        return {
            "seconds": middle(counted),
            "runs": [round(t, 3) for t in counted],
            "round_trips_in_a_row": self.in_a_row[self.warm_up :],
            "events": self.job.stats.events_found,
            "records": self.job.stats.records_total,
            "peak_rss_mb": round(self.peak_kb / 1024, 1),
            "from_block": self.job.from_block,
            "to_block": self.job.to_block,
        }


def middle(values: list) -> Any:
    """The median of an odd number of values (of an even number, the upper of the two middle ones)."""
    return sorted(values)[len(values) // 2]


def run_chainsync(devnet, tmp: Path, silent: str, proxy: RemoteProxy | None = None, runs: int = 1) -> dict[str, Any]:
    """Full syncs by a server of its own (through proxy when given): the median of runs, the last job's figures."""
    with chainsync_server(devnet, tmp, silent, proxy) as server:
        jobs = TimedJobs(server, proxy)
        for _ in range(runs):
            jobs.run()
    return jobs.figures()


def _timed_job(server) -> tuple[jobs_pb2.Job, float, int]:
    """One full sync, StartSync to completed: (job, seconds, the server's peak RSS in kB)."""
    with grpc.insecure_channel(server.addr) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        t0 = time.perf_counter()
        job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
        events = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=1800)
        job = [e.job for e in events][-1]
        seconds = time.perf_counter() - t0
    if job.state != jobs_pb2.JOB_STATE_COMPLETED:
        raise SystemExit(f"the chainsync job did not complete: {job.error.code} {job.error.message}")
    with open(f"/proc/{server.proc.pid}/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return job, seconds, peak_kb


def recorded_requests(devnet, tmp: Path, silent: str) -> list[bytes]:
    """The requests a full sync sends, recorded by a transparent proxy (for the ceiling to send again)."""
    with RemoteProxy(devnet.url, TRANSPARENT, record=True) as proxy:
        run_chainsync(devnet, tmp, silent, proxy)
        return list(proxy.recorded)


def run_memory(out: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp, open_devnet(REPO / ".devnet", "memory") as devnet:
        d = run_chainsync(devnet, Path(tmp), "off")
    results = json.loads(out.read_text()) if out.exists() else {}
    results["memory"] = {
        "events": d["events"],
        "blocks": d["to_block"] - d["from_block"] + 1,
        "records": d["records"],
        "seconds": round(d["seconds"], 2),
        "peak_rss_mb": d["peak_rss_mb"],
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    verdict = "met" if d["peak_rss_mb"] < 300 else "NOT met"
    print(
        f"{d['events']} events, {d['records']} records in {d['seconds']:.1f} s; server peak RSS "
        f"{d['peak_rss_mb']} MB (goal < 300 MB: {verdict}); wrote {out}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="chainsync benchmarks (see the module docstring)")
    parser.add_argument("--scale", default="bench")
    parser.add_argument("--naive-blocks", type=int, default=150, help="sparse blocks timed for the per-block loop")
    parser.add_argument("--naive-dense-blocks", type=int, default=160, help="dense tail timed in full")
    parser.add_argument("--out", default=str(REPO / "bench" / "results.json"))
    parser.add_argument(
        "--memory",
        action="store_true",
        help="only the memory goal: a chainsync full sync of the ~200,000-event chain "
        "(built on first use: about 20 minutes here), its server's peak RSS",
    )
    args = parser.parse_args()
    if args.memory:
        return run_memory(Path(args.out))

    load_before = os.getloadavg()[0]
    reference = cpu_reference_seconds()
    if load_before > BUSY_LOAD:
        print(
            f"warning: load average {load_before:.2f} before the run: another program is using the cores, and the "
            "figures, the ratios too, are not a quiet machine's (README, Benchmark)",
            flush=True,
        )
    with tempfile.TemporaryDirectory() as tmp, open_devnet(REPO / ".devnet", args.scale) as devnet:
        local = measure_local(devnet, Path(tmp), args)
        remote = measure_remote(devnet, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp, open_devnet(REPO / ".devnet", "demo") as demo:
        remote["demo"] = measure_demo(demo, Path(tmp))
    results = {
        **local,
        "remote": remote,
        "load_average_before": round(load_before, 2),
        "cpu_reference_seconds": reference,
    }
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if "memory" in previous:
        results["memory"] = previous["memory"]  # from the last `make bench-memory`
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"wrote {args.out}")
    return 0


def job_and_ceiling(devnet, tmp: Path, silent: str) -> tuple[dict[str, Any], ceiling.Ceiling]:
    """d (jobs with event-less changes ``silent``) and a (their requests sent again), measured alternately: a
    job before each of the ceiling's final replays, after one to warm the server up; each the median of its
    REPEATS."""
    requests = recorded_requests(devnet, tmp, silent)
    with chainsync_server(devnet, tmp, silent) as server:
        jobs = TimedJobs(server, warm_up=1)
        jobs.run()
        a = ceiling.best(devnet.url, requests, alternate_with=jobs.run)
    d = jobs.figures()
    print(
        f"  d ({silent}): {d['seconds']:.2f} s {d['runs']}; a: {a.seconds:.2f} s at {a.concurrency}, {a.order} "
        f"(fastest {a.fastest:.2f} s) {a.by_concurrency}",
        flush=True,
    )
    return d, a


def measure_local(devnet, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """a, b, c, d on loopback, and d / a in the default configuration."""
    addresses = {k: v for k, v in devnet.deployment.items() if isinstance(v, str)}
    start = min(devnet.deployment["deploymentBlocks"].values())
    end = int(
        httpx.post(devnet.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).json()[
            "result"
        ],
        16,
    )
    blocks = end - start + 1
    print(f"bench chain: blocks {start}..{end}", flush=True)
    d, a = job_and_ceiling(devnet, tmp, "off")
    d_default, a_default = job_and_ceiling(devnet, tmp, "auto")
    b = run_web3(devnet.url, addresses, start, end)
    print(f"  b web3.py:   {b['seconds']:.2f} s, {b['events']} events", flush=True)
    c = run_naive(devnet.url, addresses, start, end, args.naive_blocks, args.naive_dense_blocks)
    print(f"  c naive:     {c['seconds']:.1f} s extrapolated from {c['timed_blocks']} blocks timed", flush=True)
    silent = {s: run_chainsync(devnet, tmp, s) for s in ("trace", "blocks")}
    assert d["events"] == b["events"] == d_default["events"], (d["events"], b["events"], d_default["events"])
    events, naive = d["events"], c["seconds"]
    per_s = {
        name: secs
        for name, secs in [
            ("ceiling", a.seconds),
            ("web3", b["seconds"]),
            ("naive", naive),
            ("chainsync", d["seconds"]),
        ]
    }
    return {
        "scale": args.scale,
        "events": events,
        "blocks": blocks,
        "entities": d["records"],
        **ceiling_figures("ceiling", a),
        "web3_seconds": round(b["seconds"], 3),
        "naive_seconds_extrapolated": round(naive, 1),
        "naive_timed_blocks": c["timed_blocks"],
        "chainsync_seconds": round(d["seconds"], 3),
        **{f"{name}_events_per_s": round(events / secs) for name, secs in per_s.items()},
        **{f"{name}_blocks_per_s": round(blocks / secs) for name, secs in per_s.items()},
        "ratio_vs_ceiling": round(a.seconds / d["seconds"], 3),
        "ratio_vs_web3": round(b["seconds"] / d["seconds"], 2),
        "ratio_vs_naive": round(naive / d["seconds"], 1),
        **ceiling_figures("ceiling_default", a_default),
        "chainsync_default_seconds": round(d_default["seconds"], 3),
        "ratio_vs_ceiling_default": round(a_default.seconds / d_default["seconds"], 3),
        "peak_rss_mb": max(d["peak_rss_mb"], d_default["peak_rss_mb"]),
        "silent_changes_seconds": {
            "off": round(d["seconds"], 3),
            "auto": round(d_default["seconds"], 3),
            **{s: round(r["seconds"], 3) for s, r in silent.items()},
        },
    }


def ceiling_figures(prefix: str, a: ceiling.Ceiling) -> dict[str, Any]:
    """A ceiling's figures under results.json's names: ``seconds`` (the median at its fastest concurrency and
    order: what the ratios use), and the search's ``fastest_seconds`` beside it (bench/ceiling.py)."""
    return {
        f"{prefix}_seconds": round(a.seconds, 3),
        f"{prefix}_fastest_seconds": round(a.fastest, 3),
        f"{prefix}_concurrency": a.concurrency,
        f"{prefix}_order": a.order,
        f"{prefix}_by_concurrency": {str(k): round(v, 3) for k, v in a.by_concurrency.items()},
        f"{prefix}_requests": a.requests,
    }


def measure_remote(devnet, tmp: Path) -> dict[str, Any]:
    """d' and a' through a node 50 ms away that caps ranges and rates (tests/remote_proxy.py)."""
    with RemoteProxy(devnet.url, REMOTE, record=True) as proxy, chainsync_server(devnet, tmp, "auto", proxy) as server:
        # The first job learns the proxy's range cap (and is refused on the way); the second's requests are the
        # ceiling's; then a job before each of the ceiling's final replays, as locally.
        jobs = TimedJobs(server, proxy, warm_up=2)
        jobs.run()
        jobs.run()
        requests, job_counts = list(proxy.recorded), proxy.counts
        a = ceiling.best(proxy.url, requests, rate=REMOTE.rate, before_each=proxy.reset, alternate_with=jobs.run)
    d = jobs.figures()
    print(
        f"  remote d': {d['seconds']:.2f} s ({job_counts.requests} requests, {job_counts.rate_limited} answered 429, "
        f"{job_counts.range_refused} ranges refused, at most {job_counts.max_in_flight} in flight, "
        f"round trips in a row {d['round_trips_in_a_row']}); "
        f"a': {a.seconds:.2f} s at concurrency {a.concurrency}, {a.order} (fastest {a.fastest:.2f} s) {a.by_concurrency}",
        flush=True,
    )
    return {
        "remote_rtt_ms": round(REMOTE.rtt_s * 1000),
        "remote_rate_per_s": REMOTE.rate,
        "remote_max_logs_range": REMOTE.max_logs_range,
        **ceiling_figures("remote_ceiling", a),
        "remote_chainsync_seconds": round(d["seconds"], 3),
        "remote_ratio_vs_ceiling": round(a.seconds / d["seconds"], 3),
        "remote_job_requests": job_counts.requests,
        "remote_job_429": job_counts.rate_limited,
        "remote_job_max_in_flight": job_counts.max_in_flight,
    }


def measure_demo(demo, tmp: Path) -> dict[str, Any]:
    """The demo chain's full sync on loopback and 50 ms away, by two servers taking turns (REPEATS each,
    after one each to warm up): each the median of its jobs."""
    with (
        RemoteProxy(demo.url, REMOTE) as proxy,
        chainsync_server(demo, tmp, "auto") as near,
        chainsync_server(demo, tmp, "auto", proxy) as far,
    ):
        loopback, remote = TimedJobs(near, warm_up=1), TimedJobs(far, proxy, warm_up=1)
        for _ in range(1 + ceiling.REPEATS):
            loopback.run()
            remote.run()
    near_figures, far_figures = loopback.figures(), remote.figures()
    slowdown = far_figures["seconds"] / near_figures["seconds"]
    in_a_row = far_figures["round_trips_in_a_row"]
    typical = middle(in_a_row)
    floor = near_figures["seconds"] + typical * REMOTE.rtt_s  # what the network allows a job with these steps
    print(
        f"  demo full sync: loopback {near_figures['runs']} s, 50 ms away {far_figures['runs']} s: x{slowdown:.2f}; "
        f"round trips in a row {in_a_row}",
        flush=True,
    )
    return {
        "loopback_seconds": round(near_figures["seconds"], 3),
        "remote_seconds": round(far_figures["seconds"], 3),
        "slowdown": round(slowdown, 2),
        "round_trips_in_a_row": typical,
        "round_trip_floor_seconds": round(floor, 3),
        "ratio_vs_round_trip_floor": round(floor / far_figures["seconds"], 3),
    }


def cpu_reference_seconds() -> float:
    """How fast this machine's CPU is: the median of three timings of a fixed pure-Python loop (dict and int
    work, as the job's own). The local job is bound by the server's Python work more than its ceiling is, so
    d/a falls on a slower CPU while the demo's ratio rises: read each run's ratios beside this figure."""
    times = []
    for _ in range(3):
        started, seen = time.perf_counter(), {}
        for n in range(REFERENCE_LOOP):
            seen[n & 1023] = seen.get(n & 1023, 0) + n
        times.append(time.perf_counter() - started)
    return round(sorted(times)[1], 3)


def report(results: dict[str, Any]) -> None:
    """The tables of the README, and the goals."""
    events, blocks, remote = results["events"], results["blocks"], results["remote"]
    print()
    print(f"{events} events over {blocks} blocks ({results['entities']} entities read at the head)")
    print("| path | seconds | events/s | blocks/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, key in [
        (
            f"a. ceiling: the job's requests, bare async client (concurrency {results['ceiling_concurrency']})",
            "ceiling",
        ),
        ("b. web3.py documented path", "web3"),
        (f"c. naive per-block loop (extrapolated from {results['naive_timed_blocks']} blocks)", "naive"),
        ("d. chainsync job via gRPC (event-less changes off)", "chainsync"),
    ]:
        seconds = events / results[f"{key}_events_per_s"]
        print(f"| {name} | {seconds:.2f} | {results[key + '_events_per_s']:,} | {results[key + '_blocks_per_s']:,} |")
    print(
        f"| d default: chainsync, default configuration (trace_filter) | {results['chainsync_default_seconds']:.2f} "
        f"| {round(events / results['chainsync_default_seconds']):,} | {round(blocks / results['chainsync_default_seconds']):,} |"
    )
    print(f"| a default: its requests, bare async client | {results['ceiling_default_seconds']:.2f} | | |")
    print()
    print(
        f"remote profile: {remote['remote_rtt_ms']} ms round trip, {remote['remote_rate_per_s']:.0f} requests/s, "
        f"eth_getLogs up to {remote['remote_max_logs_range']:,} blocks"
    )
    print("| path | seconds |")
    print("| --- | ---: |")
    print(
        f"| a'. ceiling: d''s {remote['remote_ceiling_requests']} requests at concurrency {remote['remote_ceiling_concurrency']}, paced at the rate | {remote['remote_ceiling_seconds']:.2f} |"
    )
    print(f"| d'. chainsync job, default configuration | {remote['remote_chainsync_seconds']:.2f} |")
    demo = remote["demo"]
    print(
        f"| demo chain full sync: loopback / 50 ms away | {demo['loopback_seconds']:.2f} / {demo['remote_seconds']:.2f} (x{demo['slowdown']}) |"
    )
    print(
        f"| demo chain: loopback + its {demo['round_trips_in_a_row']} round trips in a row at "
        f"{remote['remote_rtt_ms']} ms, ÷ 50 ms away | {demo['round_trip_floor_seconds']:.2f} / "
        f"{demo['remote_seconds']:.2f} ({demo['ratio_vs_round_trip_floor']}) |"
    )
    print()
    goals = [
        ("d/a >= 0.8", results["ratio_vs_ceiling"] >= 0.8, results["ratio_vs_ceiling"]),
        (
            "d default / a default >= 0.7",
            results["ratio_vs_ceiling_default"] >= 0.7,
            results["ratio_vs_ceiling_default"],
        ),
        ("d'/a' >= 0.7", remote["remote_ratio_vs_ceiling"] >= 0.7, remote["remote_ratio_vs_ceiling"]),
        ("demo 50 ms away <= 2.5 x loopback", demo["slowdown"] <= 2.5, demo["slowdown"]),
        ("d/b >= 10", results["ratio_vs_web3"] >= 10, results["ratio_vs_web3"]),
        ("d/c >= 30", results["ratio_vs_naive"] >= 30, results["ratio_vs_naive"]),
    ]
    print("goals: " + "; ".join(f"{name}: {value} ({'met' if ok else 'NOT met'})" for name, ok, value in goals))
    against_fastest = [
        ("d/a", results["ceiling_fastest_seconds"] / results["chainsync_seconds"]),
        ("d default / a default", results["ceiling_default_fastest_seconds"] / results["chainsync_default_seconds"]),
        ("d'/a'", remote["remote_ceiling_fastest_seconds"] / remote["remote_chainsync_seconds"]),
    ]
    print(
        "the same against the ceiling search's single fastest run (bench/ceiling.py): "
        + "; ".join(f"{name} {ratio:.3f}" for name, ratio in against_fastest)
    )
    print(
        f"server peak RSS {results['peak_rss_mb']} MB; event-less change scan: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in results["silent_changes_seconds"].items())
    )
    print(f"CPU reference (a fixed pure-Python loop, bench/bench.py): {results['cpu_reference_seconds']} s")
    memory = results.get("memory")
    if memory:
        print(
            f"memory goal (last `make bench-memory`): {memory['events']:,} events, server peak RSS "
            f"{memory['peak_rss_mb']} MB (goal <= 300 MB: {'met' if memory['peak_rss_mb'] <= 300 else 'NOT met'})"
        )
    else:
        print("memory goal: run `make bench-memory` (builds a ~200,000-event chain once, about 20 minutes)")


if __name__ == "__main__":
    sys.exit(main())
