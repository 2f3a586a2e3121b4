"""Fixtures that start the product's processes against the demo devnet.

Registered from conftest.py. ``stack`` is one gRPC server and one bridge for
the whole session; tests that kill or reconfigure a server start their own
with ``tests.processes.grpc_server``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import Service, grpc_server, rest_bridge


@dataclass
class Stack:
    server: Service
    bridge: Service
    http: httpx.Client
    stub: jobs_pb2_grpc.JobServiceStub


@pytest.fixture(scope="session")
def stack(devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("stack") / "jobs.sqlite3"
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db) as server:
        with rest_bridge(server.addr) as bridge, httpx.Client(base_url=bridge.url, timeout=30) as http:
            with grpc.insecure_channel(server.addr) as channel:
                yield Stack(server, bridge, http, jobs_pb2_grpc.JobServiceStub(channel))


def wait_until(predicate: Callable[[], Any], timeout_s: float = 60, interval_s: float = 0.05, what: str = "") -> Any:
    """Polls predicate until it returns a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")


def wait_for_state(
    stub: jobs_pb2_grpc.JobServiceStub, job_id: str, states: tuple[int, ...], timeout_s: float = 60
) -> jobs_pb2.Job:
    def look() -> jobs_pb2.Job | None:
        job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
        return job if job.state in states else None

    return wait_until(look, timeout_s, what=f"job {job_id} to reach {states}")


TERMINAL = (jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)


@contextmanager
def slow_server(devnet, db: Path, port: int | None = None, **env: str) -> Iterator[Service]:
    """A server whose full sync of the demo chain takes several seconds.

    It reads logs 20 blocks at a time, one request at a time
    (CHAINSYNC_RPC_CONCURRENCY=1), through a proxy that delays every request by
    25 ms, so a job can be cancelled, killed or watched mid-way. (Concurrent
    scans have their own tests: tests/test_concurrency.py.)
    """
    with FaultProxy(devnet.url, Faults(delay_s=0.025)) as proxy:
        with grpc_server(
            rpc_url=proxy.url,
            deployment_path=devnet.deployment_path,
            db=db,
            extra_env={"CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_RPC_CONCURRENCY": "1", **env},
            port=port,
        ) as server:
            yield server
