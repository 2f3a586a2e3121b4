"""Load on the REST bridge's status endpoint: N concurrent pollers, requests per second and latency percentiles.

    .venv/bin/python bench/bridge_load.py [--pollers 100] [--seconds 10] [--procs 2] [--interval 0]

Starts a real `chainsync serve` (its RPC node a loopback socket that never
answers, so the polled job stays `running`: no devnet needed) and a real
`chainsync bridge` on loopback ports, starts one job, then runs the pollers
as asyncio tasks spread over ``--procs`` client processes. Each poller GETs
/api/blockchain/sync/status/{jobId} in a loop (``--interval`` seconds apart;
0 = as fast as answers come) until the time is up. Every loop is bounded by
the deadline; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import grpc_server, rest_bridge, silent_rpc  # noqa: E402

DEPLOYMENT = {
    "AuthRegistry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "Proposals": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "Petitions": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    "Reports": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def poller(
    host: str, port: int, path: str, deadline: float, interval: float, latencies: list[float], start: float = 0.0
) -> int:
    """One keep-alive HTTP/1.1 connection, GET after GET until the deadline; returns the non-200 count.

    A bare asyncio stream rather than an HTTP library, so that the client costs little CPU next to the bridge.
    ``start`` (time.monotonic(), which all processes share): connect first, then wait for it before polling.
    """
    reader, writer = await asyncio.open_connection(host, port)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
    errors = 0
    await asyncio.sleep(random.uniform(0, interval))  # pollers that poll every few seconds are not in step
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            if interval:
                await asyncio.sleep(interval)
    finally:
        writer.close()
    return errors


async def poll(url: str, pollers: int, seconds: float, interval: float) -> tuple[list[float], int]:
    parsed = httpx.URL(url)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    errors = await asyncio.gather(
        *(
            poller(parsed.host, parsed.port, parsed.raw_path.decode(), deadline, interval, latencies)
            for _ in range(pollers)
        )
    )
    return latencies, sum(errors)


def client_process(url: str, pollers: int, seconds: float, interval: float, out: multiprocessing.Queue) -> None:
    out.put(asyncio.run(poll(url, pollers, seconds, interval)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2, help="client processes the pollers are spread over")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between one poller's requests")
    parser.add_argument("--health", action="store_true", help="poll /healthz instead (no gRPC call)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, silent_rpc() as rpc_url:
        deployment = Path(tmp) / "deployment.json"
        deployment.write_text(json.dumps(DEPLOYMENT))
        with grpc_server(rpc_url=rpc_url, deployment_path=deployment, db=Path(tmp) / "jobs.db") as server:
            with rest_bridge(server.addr) as bridge:
                started = httpx.post(f"{bridge.url}/api/blockchain/sync", json={"blocksBack": 10}, timeout=30)
                job_id = started.json()["jobId"]
                url = f"{bridge.url}/api/blockchain/sync/status/{job_id}"
                if args.health:
                    url = f"{bridge.url}/healthz"  # the bridge alone, no gRPC call: its HTTP ceiling
                httpx.get(url, timeout=30).raise_for_status()
                shares = [args.pollers // args.procs + (i < args.pollers % args.procs) for i in range(args.procs)]
                queue: multiprocessing.Queue = multiprocessing.Queue()
                procs = [
                    multiprocessing.Process(target=client_process, args=(url, n, args.seconds, args.interval, queue))
                    for n in shares
                    if n
                ]
                t0 = time.perf_counter()
                for p in procs:
                    p.start()
                results = [queue.get(timeout=args.seconds + 120) for _ in procs]
                for p in procs:
                    p.join(timeout=30)
                    if p.is_alive():
                        p.kill()
                elapsed = time.perf_counter() - t0
    latencies = [lat for lats, _ in results for lat in lats]
    errors = sum(e for _, e in results)
    ms = [lat * 1000 for lat in latencies]
    report = {
        "pollers": args.pollers,
        "clientProcesses": len(procs),
        "intervalSeconds": args.interval,
        "seconds": round(elapsed, 2),
        "requests": len(ms),
        "errors": errors,
        "requestsPerSecond": round(len(ms) / elapsed, 1),
        "latencyMs": {
            "p50": round(statistics.median(ms), 2),
            "p90": round(percentile(ms, 90), 2),
            "p99": round(percentile(ms, 99), 2),
            "max": round(max(ms), 2),
        },
    }
    print(json.dumps(report, indent=2))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
