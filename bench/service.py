"""Measures the JobService itself (not the sync): StartSync latency, GetJob
throughput, and the memory of a server holding finished jobs.

    .venv/bin/python bench/service.py [--calls 1000] [--clients 8] [--seconds 5]

Starts its own demo devnet, a real `chainsync serve` on a loopback port with a
fresh SQLite store, and talks to it over gRPC. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chainsync.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402

from tests.processes import free_port, grpc_server  # noqa: E402


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    from devnet.command import open_devnet

    with tempfile.TemporaryDirectory() as tmp, open_devnet(Path(".devnet"), "demo", free_port()) as devnet:
        with grpc_server(
            rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=Path(tmp) / "jobs.db"
        ) as server:
            idle_rss, _ = rss_mb(server.proc.pid)
            with grpc.insecure_channel(server.addr) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                latencies, ids = [], []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    ids.append(stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=10)).job_id)
                    latencies.append((time.perf_counter() - t0) * 1000)

                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    page = stub.ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_COMPLETED, page_size=1))
                    if page.total_size >= args.calls:
                        break
                    time.sleep(0.5)
                finished = page.total_size
                rss_finished, peak = rss_mb(server.proc.pid)

            counts = [0] * args.clients
            stop_at = time.monotonic() + args.seconds

            def poll(n: int) -> None:
                with grpc.insecure_channel(server.addr) as own:
                    own_stub = jobs_pb2_grpc.JobServiceStub(own)
                    i = 0
                    while time.monotonic() < stop_at:
                        own_stub.GetJob(jobs_pb2.GetJobRequest(job_id=ids[i % len(ids)]))
                        counts[n] += 1
                        i += 1

            threads = [threading.Thread(target=poll, args=(n,)) for n in range(args.clients)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0

    figures = {
        "start_sync_calls": args.calls,
        "start_sync_median_ms": round(statistics.median(latencies), 2),
        "start_sync_p99_ms": round(percentile(latencies, 99), 2),
        "get_job_clients": args.clients,
        "get_job_per_s": round(sum(counts) / elapsed),
        "finished_jobs": finished,
        "server_rss_idle_mb": round(idle_rss, 1),
        "server_rss_with_finished_jobs_mb": round(rss_finished, 1),
        "server_peak_rss_mb": round(peak, 1),
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
