"""`make bench`: the sync measured against its ceilings, in one run, on one chain.

On the bench devnet (at least 20,000 events over at least 50,000 blocks, built
once and reloaded in seconds), over the same range (deployment to head):

  a. ceiling   a bare HTTP client (httpx + orjson) sending the requests the
               sync needs (eth_getLogs in 2,000-block chunks, then every
               touched entity's getter in JSON-RPC batches), parsing the JSON,
               decoding nothing;
  b. web3      web3.py's documented path: decoded `contract.events.X.get_logs`
               per event type in the same chunks, then `getter(id).call(
               block_identifier=to_block)` per entity;
  c. naive     the per-block loop (eth_getLogs block by block and event by
               event, decoded by web3): the dense tail of the chain timed in
               full, a sample of the sparse part timed and extrapolated;
  d. chainsync a job through gRPC, StartSync to `completed`, result stored,
               event-less change scan off (same requests as a and b), and
               again with each scan strategy to show its cost.

Prints a table and writes bench/results.json. Ratios compare runs made here,
one after the other, on the same machine; absolute times are not the point.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chainsync.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402

from devnet.command import open_devnet  # noqa: E402
from server.engine.contracts import entity_kinds, load_abi  # noqa: E402
from tests.processes import grpc_server  # noqa: E402

CHUNK = 2_000
KINDS = {"proposals": "Proposals", "petitions": "Petitions", "reports": "Reports"}


def post(client: httpx.Client, url: str, payload: Any) -> Any:
    response = client.post(url, content=orjson.dumps(payload), headers={"content-type": "application/json"})
    response.raise_for_status()
    return orjson.loads(response.content)


def touched_ids(logs: list[dict], kinds: dict, addresses: dict[str, str]) -> dict[str, set[int]]:
    by_address = {addresses[KINDS[k]].lower(): k for k in KINDS}
    ids: dict[str, set[int]] = {k: set() for k in KINDS}
    for log in logs:
        kind = by_address.get(log["address"].lower())
        if kind and log["topics"] and log["topics"][0] in kinds[kind].topics:
            ids[kind].add(int(log["topics"][1], 16))
    return ids


def run_ceiling(url: str, addresses: dict[str, str], start: int, end: int) -> dict[str, Any]:
    kinds = entity_kinds()
    contracts = [addresses[c] for c in KINDS.values()]
    t0 = time.perf_counter()
    logs: list[dict] = []
    requests = 0
    with httpx.Client(timeout=120) as client:
        for lo in range(start, end + 1, CHUNK):
            hi = min(end, lo + CHUNK - 1)
            answer = post(
                client,
                url,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "eth_getLogs",
                    "params": [{"fromBlock": hex(lo), "toBlock": hex(hi), "address": contracts}],
                },
            )
            logs.extend(answer["result"])
            requests += 1
        ids = touched_ids(logs, kinds, addresses)  # which getters to call; not decoding
        for kind, entity_ids in ids.items():
            calls = [kinds[kind].getter_call(addresses[KINDS[kind]], i, end) for i in sorted(entity_ids)]
            for first in range(0, len(calls), 100):
                batch = [
                    {"jsonrpc": "2.0", "id": n, "method": m, "params": p}
                    for n, (m, p) in enumerate(calls[first : first + 100])
                ]
                post(client, url, batch)
                requests += 1
    return {
        "seconds": time.perf_counter() - t0,
        "events": len(logs),
        "requests": requests,
        "entities": sum(len(v) for v in ids.values()),
    }


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


def run_chainsync(devnet, tmp: Path, silent: str) -> dict[str, Any]:
    with grpc_server(
        rpc_url=devnet.url,
        deployment_path=devnet.deployment_path,
        db=tmp / f"jobs-{silent}.db",
        workers=1,
        extra_env={"CHAINSYNC_SILENT_CHANGES": silent, "CHAINSYNC_LOG_CHUNK": str(CHUNK)},
    ) as server:
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
    return {
        "seconds": seconds,
        "events": job.stats.events_found,
        "records": job.stats.records_total,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "from_block": job.from_block,
        "to_block": job.to_block,
    }


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

    with tempfile.TemporaryDirectory() as tmp, open_devnet(REPO / ".devnet", args.scale) as devnet:
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
        d = run_chainsync(devnet, Path(tmp), "off")
        print(f"  d chainsync: {d['seconds']:.2f} s, {d['events']} events", flush=True)
        a = run_ceiling(devnet.url, addresses, start, end)
        print(f"  a ceiling:   {a['seconds']:.2f} s, {a['events']} events, {a['requests']} requests", flush=True)
        b = run_web3(devnet.url, addresses, start, end)
        print(f"  b web3.py:   {b['seconds']:.2f} s, {b['events']} events", flush=True)
        c = run_naive(devnet.url, addresses, start, end, args.naive_blocks, args.naive_dense_blocks)
        print(f"  c naive:     {c['seconds']:.1f} s extrapolated from {c['timed_blocks']} blocks timed", flush=True)
        silent = {s: run_chainsync(devnet, Path(tmp), s) for s in ("trace", "blocks")}
        for s, r in silent.items():
            print(f"  d chainsync, event-less changes by {s}: {r['seconds']:.2f} s", flush=True)

    events = a["events"]
    assert d["events"] == events == b["events"], (d["events"], events, b["events"])
    naive_seconds = c["seconds"]
    results = {
        "scale": args.scale,
        "events": events,
        "blocks": blocks,
        "entities": a["entities"],
        "ceiling_seconds": round(a["seconds"], 3),
        "web3_seconds": round(b["seconds"], 3),
        "naive_seconds_extrapolated": round(naive_seconds, 1),
        "naive_timed_blocks": c["timed_blocks"],
        "chainsync_seconds": round(d["seconds"], 3),
        "ceiling_events_per_s": round(events / a["seconds"]),
        "web3_events_per_s": round(events / b["seconds"]),
        "naive_events_per_s": round(events / naive_seconds),
        "chainsync_events_per_s": round(events / d["seconds"]),
        "ceiling_blocks_per_s": round(blocks / a["seconds"]),
        "web3_blocks_per_s": round(blocks / b["seconds"]),
        "naive_blocks_per_s": round(blocks / naive_seconds),
        "chainsync_blocks_per_s": round(blocks / d["seconds"]),
        "ratio_vs_ceiling": round(a["seconds"] / d["seconds"], 3),
        "ratio_vs_web3": round(b["seconds"] / d["seconds"], 2),
        "ratio_vs_naive": round(naive_seconds / d["seconds"], 1),
        "peak_rss_mb": d["peak_rss_mb"],
        "silent_changes_seconds": {
            "off": round(d["seconds"], 3),
            **{s: round(r["seconds"], 3) for s, r in silent.items()},
        },
    }
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if "memory" in previous:
        results["memory"] = previous["memory"]  # from the last `make bench-memory`
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    goals = [
        ("d/a >= 0.5", results["ratio_vs_ceiling"] >= 0.5),
        ("d/b >= 10", results["ratio_vs_web3"] >= 10),
        ("d/c >= 30", results["ratio_vs_naive"] >= 30),
    ]
    print()
    print(f"{events} events over {blocks} blocks ({a['entities']} entities read at the head)")
    print("| path | seconds | events/s | blocks/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, key, secs in [
        ("a. ceiling (bare HTTP + JSON)", "ceiling", a["seconds"]),
        ("b. web3.py documented path", "web3", b["seconds"]),
        (f"c. naive per-block loop (extrapolated from {c['timed_blocks']} blocks)", "naive", naive_seconds),
        ("d. chainsync job via gRPC", "chainsync", d["seconds"]),
    ]:
        print(f"| {name} | {secs:.2f} | {results[key + '_events_per_s']:,} | {results[key + '_blocks_per_s']:,} |")
    print()
    print(
        f"d/a {results['ratio_vs_ceiling']} · d/b {results['ratio_vs_web3']} · d/c {results['ratio_vs_naive']} · "
        f"server peak RSS {results['peak_rss_mb']} MB"
    )
    print(
        "event-less change scan: " + ", ".join(f"{k} {v:.2f} s" for k, v in results["silent_changes_seconds"].items())
    )
    print("goals: " + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in goals))
    memory = results.get("memory")
    if memory:
        print(
            f"memory goal (last `make bench-memory`): {memory['events']:,} events, server peak RSS "
            f"{memory['peak_rss_mb']} MB (goal < 300 MB: {'met' if memory['peak_rss_mb'] < 300 else 'NOT met'})"
        )
    else:
        print("memory goal: run `make bench-memory` (builds a ~200,000-event chain once, about 20 minutes)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
