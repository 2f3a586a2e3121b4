"""Several requests in flight, where users run chainsync: a node farther away that limits ranges and rates.

Every test puts tests/remote_proxy.py between the server and anvil (a fixed
round trip, an eth_getLogs range cap, 429 with Retry-After above a rate),
which also counts the requests in flight at once. What a user checks: the
records are exactly those of a clean run; the endpoint's window never passes
CHAINSYNC_RPC_CONCURRENCY, even shared by two jobs; a rate limit shrinks it
and the job still completes; a cancel stops a concurrent scan within a
second; a server killed mid-scan resumes from its contiguous checkpoint;
progress never goes down and its ETA is about right; a full sync reads its
records while it scans, at the head's hash, and looks for event-less calls
only in its reorg window; a small chain's whole sync is three round trips in
a row.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf.json_format import MessageToDict

from tests.processes import Service, grpc_server
from tests.remote_proxy import Limits, RemoteProxy
from tests.stack import TERMINAL, wait_for_state, wait_until
from tests.test_faults import full_sync


@pytest.fixture(scope="module")
def reference(stack) -> dict:
    """The records of a full sync straight from anvil, no proxy."""
    job, records = full_sync(stack.server.addr)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED
    return records


@contextmanager
def server_behind(devnet, proxy: RemoteProxy, db: Path, **env: str) -> Iterator[Service]:
    with grpc_server(
        rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db, extra_env=env, workers=2
    ) as server:
        yield server


def metric(server: Service, name: str) -> float:
    lines = httpx.get(f"http://{server.metrics_addr}/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{"))


def test_through_a_slow_capped_rate_limited_node_the_result_is_exact_within_the_cap(
    devnet, tmp_path, reference
) -> None:
    limits = Limits(rtt_s=0.02, rate=60, max_logs_range=500)
    with RemoteProxy(devnet.url, limits) as proxy:
        with server_behind(devnet, proxy, tmp_path / "j.db", CHAINSYNC_RPC_CONCURRENCY="3") as server:
            job, records = full_sync(server.addr)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
    assert records == reference
    assert proxy.counts.range_refused > 0, "the 2,000-block first chunk was refused and split"
    assert 2 <= proxy.counts.max_in_flight <= 3, "concurrent, and never above CHAINSYNC_RPC_CONCURRENCY"


def test_a_429_storm_shrinks_the_window_and_the_job_still_completes(devnet, tmp_path, reference) -> None:
    limits = Limits(rtt_s=0.01, rate=20, burst=5, max_logs_range=None)
    with RemoteProxy(devnet.url, limits) as proxy:
        env = {"CHAINSYNC_RPC_CONCURRENCY": "8", "CHAINSYNC_LOG_CHUNK": "100"}
        with server_behind(devnet, proxy, tmp_path / "j.db", **env) as server:
            windows: list[float] = []
            watching = threading.Event()

            def scrape() -> None:  # the endpoint's window while the job runs, every 50 ms
                while not watching.wait(0.05):
                    windows.append(metric(server, "chainsync_rpc_window"))

            scraper = threading.Thread(target=scrape, daemon=True)
            scraper.start()
            job, records = full_sync(server.addr)
            watching.set()
            scraper.join(5)
            pace = metric(server, "chainsync_rpc_pace")
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
    assert records == reference
    assert proxy.counts.rate_limited > 0
    assert windows and min(w for w in windows if w) < 8, "the 429s shrank the window (it starts at the cap, 8)"
    assert 0 < pace <= 20, "paced under the provider's 20 requests a second"
    # after the first refusals the pace keeps it under the limit: most requests were never refused
    assert proxy.counts.rate_limited < proxy.counts.forwarded / 4, proxy.counts


def test_two_jobs_on_one_endpoint_share_its_window(devnet, tmp_path, reference) -> None:
    with RemoteProxy(devnet.url, Limits(rtt_s=0.03, rate=0, max_logs_range=None)) as proxy:
        env = {"CHAINSYNC_RPC_CONCURRENCY": "3", "CHAINSYNC_LOG_CHUNK": "100"}
        with server_behind(devnet, proxy, tmp_path / "j.db", **env) as server, grpc.insecure_channel(server.addr) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            ids = [stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id for _ in range(2)]
            jobs = [wait_for_state(stub, job_id, TERMINAL, 120) for job_id in ids]
    assert all(j.state == jobs_pb2.JOB_STATE_COMPLETED for j in jobs)
    first, second = sorted(jobs, key=lambda j: j.start_time.ToNanoseconds())
    assert second.start_time.ToNanoseconds() < first.end_time.ToNanoseconds(), "the two jobs ran at the same time"
    assert proxy.counts.max_in_flight <= 3, "one window for the endpoint, whatever the number of jobs"


def test_a_cancel_stops_a_concurrent_scan_within_a_second(devnet, tmp_path) -> None:
    with RemoteProxy(devnet.url, Limits(rtt_s=0.1, rate=0, max_logs_range=None)) as proxy:
        # chunks of 20 blocks that do not grow: a scan of many round trips, several at once
        env = {"CHAINSYNC_RPC_CONCURRENCY": "8", "CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_LOG_CHUNK_MAX": "20"}
        with server_behind(devnet, proxy, tmp_path / "j.db", **env) as server, grpc.insecure_channel(server.addr) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.blocks_done > 100, 60)
            # cancel at a moment when the scan has several requests in flight (between two waves it may have one)
            wait_until(lambda: proxy.counts.in_flight > 1, 10, 0.005, "the scan to have several requests in flight")
            asked = time.monotonic()
            stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
            job = wait_for_state(stub, job_id, TERMINAL, 10)
            took = time.monotonic() - asked
    assert job.state == jobs_pb2.JOB_STATE_CANCELLED and took < 1.0, took
    assert job.stats.blocks_done < job.stats.blocks_total


def test_a_server_killed_mid_scan_resumes_from_its_contiguous_checkpoint(devnet, tmp_path, reference) -> None:
    db = tmp_path / "j.db"
    with RemoteProxy(devnet.url, Limits(rtt_s=0.05, rate=0, max_logs_range=None)) as proxy:
        # chunks that stay small: the scan still has about a second to go when the server is killed
        env = {"CHAINSYNC_RPC_CONCURRENCY": "8", "CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_LOG_CHUNK_MAX": "20"}
        with server_behind(devnet, proxy, db, **env) as first, grpc.insecure_channel(first.addr) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.blocks_done > 500, 60)
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(10)
        with sqlite3.connect(db) as conn:
            state, scanned_to = conn.execute(
                "SELECT state, json_extract(checkpoint, '$.scannedTo') FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            highest = conn.execute("SELECT MAX(block) FROM touched WHERE job_id = ?", (job_id,)).fetchone()[0]
        assert state == "running", "the server was killed mid-scan"
        assert scanned_to > 0 and highest <= scanned_to, "nothing saved past the contiguous checkpoint"
        with server_behind(devnet, proxy, db, **env) as second, grpc.insecure_channel(second.addr) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            job = wait_for_state(stub, job_id, TERMINAL, 120)
            events = list(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=1), timeout=10))
            result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
    resumed = next(e.job for e in events if e.job.message.startswith("Resuming blocks"))
    assert resumed.stats.blocks_done == scanned_to - resumed.from_block + 1, "it starts where the checkpoint ends"
    assert {k: [MessageToDict(r) for r in getattr(result, k)] for k in reference} == reference


def test_progress_never_goes_down_and_its_eta_is_about_right(devnet, tmp_path) -> None:
    with RemoteProxy(devnet.url, Limits(rtt_s=0.05, rate=0, max_logs_range=None)) as proxy:
        env = {"CHAINSYNC_RPC_CONCURRENCY": "2", "CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_LOG_CHUNK_MAX": "20"}  # ~3 s
        with server_behind(devnet, proxy, tmp_path / "j.db", **env) as server, grpc.insecure_channel(server.addr) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            seen = [
                (time.monotonic(), e.job) for e in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=120)
            ]
    end = seen[-1][0]
    assert seen[-1][1].state == jobs_pb2.JOB_STATE_COMPLETED
    progress = [job.progress for _, job in seen]
    blocks = [job.stats.blocks_done for _, job in seen]
    assert progress == sorted(progress) and blocks == sorted(blocks), "never down, chunks finishing out of order or not"
    halfway = [(at, job) for at, job in seen if 25 <= job.progress <= 75 and job.stats.eta_seconds > 0]
    assert halfway, progress
    at, job = halfway[0]
    left = end - at
    assert left / 4 <= job.stats.eta_seconds <= left * 4, (job.stats.eta_seconds, left)


def test_a_full_sync_reads_at_the_heads_hash_while_it_scans_and_looks_for_calls_only_in_its_window(
    devnet, tmp_path, reference
) -> None:
    """The requests a full sync sends, as the node sees them: every state read names the block by the hash
    the result reports (EIP-1898), the records are read while the scan's last chunks are in flight (here
    eth_getLogs is slow), and trace_filter covers only the reorg window's blocks (every id is read at
    toBlock anyway)."""
    window = 128  # CHAINSYNC_REORG_WINDOW's default
    limits = Limits(rtt_s=0.01, rate=0, max_logs_range=None, slower={"eth_getLogs": 0.3})
    with RemoteProxy(devnet.url, limits, record=True) as proxy:
        env = {"CHAINSYNC_LOG_CHUNK": "200", "CHAINSYNC_LOG_CHUNK_MAX": "200"}  # about 12 chunks
        with server_behind(devnet, proxy, tmp_path / "j.db", **env) as server:
            wait_until(lambda: "trace_filter" in proxy.counts.methods, 10, what="the server's trace_filter probe")
            proxy.reset()
            with grpc.insecure_channel(server.addr) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
                job = wait_for_state(stub, job_id, TERMINAL, 120)
                result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
            calls = [call for body in proxy.recorded for call in _calls(body)]
            answered = [(at, [c["method"] for c in _calls(body)]) for at, body in proxy.answered]
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
    assert {k: [MessageToDict(r) for r in getattr(result, k)] for k in reference} == reference
    state_reads = [c["params"][1] for c in calls if c["method"] == "eth_call"]
    assert state_reads and all(at == {"blockHash": result.to_block_hash} for at in state_reads), state_reads[:3]
    last_logs = max(at for at, methods in answered if "eth_getLogs" in methods)
    getter_batches = [at for at, methods in answered if methods == ["eth_call"] * len(methods) and len(methods) > 3]
    assert getter_batches and max(getter_batches) < last_logs, "every record read before the scan's last answer"
    traced_from = [int(c["params"][0]["fromBlock"], 16) for c in calls if c["method"] == "trace_filter"]
    assert traced_from and min(traced_from) == result.to_block - window + 1, sorted(traced_from)


def test_a_full_sync_to_the_head_is_three_round_trips_in_a_row(devnet, tmp_path, reference) -> None:
    """What a node far away costs a whole sync that fits in one window: the setup (chain id, head), then the
    window's hashes, the logs, event-less calls and counters at once, then the getters beside the final check
    (docs/decisions.md, "Every read comes from the chain the final check compares with")."""
    # 100 ms: a request of one round trip is counted as waiting for another only if it went out that much later
    with RemoteProxy(devnet.url, Limits(rtt_s=0.1, rate=0, max_logs_range=None)) as proxy:
        with server_behind(devnet, proxy, tmp_path / "j.db") as server:
            wait_until(lambda: "trace_filter" in proxy.counts.methods, 10, what="the server's trace_filter probe")
            proxy.reset()
            job, records = full_sync(server.addr)
            in_a_row, requests = proxy.round_trips_in_a_row(), proxy.counts.requests
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
    assert records == reference
    assert requests > 3, "several requests, most of them side by side"
    assert in_a_row == 3, (in_a_row, requests)


def _calls(body: bytes) -> list[dict]:
    request = orjson.loads(body)
    return request if isinstance(request, list) else [request]


def test_a_range_cap_the_provider_states_is_kept_for_the_servers_next_jobs(devnet, tmp_path, reference) -> None:
    """A provider that says how many blocks one eth_getLogs may cover (Alchemy: "up to a 2K block range")
    refuses the first job's wider chunk; the server's next job stays within it from its first chunk."""
    with RemoteProxy(devnet.url, Limits(rtt_s=0.005, rate=0, max_logs_range=2_000)) as proxy:
        with server_behind(devnet, proxy, tmp_path / "j.db", CHAINSYNC_LOG_CHUNK="4000") as server:
            first, first_records = full_sync(server.addr)
            refused_first = proxy.counts.range_refused
            proxy.reset()
            second, second_records = full_sync(server.addr)
    assert first.state == second.state == jobs_pb2.JOB_STATE_COMPLETED, (first.error, second.error)
    assert first_records == second_records == reference
    assert refused_first > 0 and proxy.counts.range_refused == 0, refused_first
