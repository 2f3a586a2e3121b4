"""Several `chainsync serve` replicas on one PostgreSQL schema.

Every job runs exactly once; a client may start a job on one replica and watch,
cancel or fetch it on another; a replica killed with SIGKILL mid-job hands the
job to a live one, which resumes from the checkpoint (its lease expires).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf.json_format import MessageToDict
from psycopg import sql

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import grpc_server
from tests.stack import TERMINAL, wait_for_state, wait_until
from tests.test_store import PG_URL

LEASE_S = "3"


@pytest.fixture
def schema_url() -> Iterator[tuple[str, str]]:
    import uuid

    schema = f"chainsync_test_{uuid.uuid4().hex}"
    yield f"{PG_URL}?schema={schema}", schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def records(stub, job_id: str) -> dict:
    result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    return {k: [MessageToDict(r) for r in getattr(result, k)] for k in ("proposals", "petitions", "reports")}


def test_jobs_run_exactly_once_across_replicas_and_any_replica_answers(devnet, schema_url, stack) -> None:
    db, schema = schema_url
    env = {"CHAINSYNC_LEASE_SECONDS": LEASE_S}
    reference_id = stack.stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=300)).job_id
    wait_for_state(stack.stub, reference_id, TERMINAL)
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as a, \
            grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as b, \
            grpc.insecure_channel(a.addr) as ca, grpc.insecure_channel(b.addr) as cb:  # fmt: skip
        sa, sb = jobs_pb2_grpc.JobServiceStub(ca), jobs_pb2_grpc.JobServiceStub(cb)
        ids = [(sa if n % 2 else sb).StartSync(jobs_pb2.StartSyncRequest(blocks_back=300)).job_id for n in range(20)]
        for job_id in ids:  # watched on the other replica than the one it was likely started on
            events = list(sb.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=120))
            assert events[-1].job.state == jobs_pb2.JOB_STATE_COMPLETED
        with psycopg.connect(PG_URL) as conn:
            query = sql.SQL("SELECT attempts, count(*) FROM {}.jobs GROUP BY attempts").format(sql.Identifier(schema))
            assert dict(conn.execute(query).fetchall()) == {1: 20}, "every job claimed exactly once"
        assert records(sa, ids[0]) == records(sb, ids[0])
        cancel_me = sa.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
        sb.CancelJob(jobs_pb2.CancelJobRequest(job_id=cancel_me))
        assert wait_for_state(sa, cancel_me, TERMINAL).state in (
            jobs_pb2.JOB_STATE_CANCELLED,
            jobs_pb2.JOB_STATE_COMPLETED,  # it may have finished before the cancel landed
        )


def test_a_replica_killed_mid_job_hands_the_job_to_a_live_one(devnet, schema_url, stack) -> None:
    db, _schema = schema_url
    reference_id = stack.stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
    wait_for_state(stack.stub, reference_id, TERMINAL)
    reference = records(stack.stub, reference_id)
    env = {
        "CHAINSYNC_LEASE_SECONDS": LEASE_S,
        "CHAINSYNC_LOG_CHUNK": "20",
        "CHAINSYNC_LOG_CHUNK_MAX": "20",  # chunks that do not grow: about 120 of them
        "CHAINSYNC_WORKERS": "1",
        "CHAINSYNC_RPC_CONCURRENCY": "1",  # one request at a time: slow enough to kill mid-job
    }
    with FaultProxy(devnet.url, Faults(delay_s=0.025)) as proxy:
        with grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as a:
            with grpc.insecure_channel(a.addr) as ca:
                sa = jobs_pb2_grpc.JobServiceStub(ca)
                job_id = sa.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
                wait_until(lambda: sa.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).progress >= 20, 60)
                before = sa.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
                with grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as b:
                    os.kill(a.proc.pid, signal.SIGKILL)
                    a.proc.wait(timeout=10)
                    with grpc.insecure_channel(b.addr) as cb:
                        sb = jobs_pb2_grpc.JobServiceStub(cb)
                        job = wait_for_state(sb, job_id, TERMINAL, timeout_s=120)
                        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
                        events = list(
                            sb.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=1), timeout=10)
                        )
                        resuming = next(e.job for e in events if e.job.message.startswith("Resuming"))
                        assert resuming.stats.blocks_done >= before.stats.blocks_done > 0
                        assert records(sb, job_id) == reference


def test_a_replica_answers_another_replicas_writes_within_a_second(devnet, schema_url) -> None:
    """GetJob answers from memory (server/service/job_cache.py); another replica's write reaches it by
    NOTIFY, or by the reconciliation every second at the latest: the stated bound."""
    db, _schema = schema_url
    # a few seconds of progress writes: chunks of 40 blocks that never grow, one request at a time
    env = {"CHAINSYNC_LOG_CHUNK": "40", "CHAINSYNC_LOG_CHUNK_MAX": "40", "CHAINSYNC_RPC_CONCURRENCY": "1"}
    with FaultProxy(devnet.url, Faults(delay_s=0.01)) as proxy:
        with grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as a, \
                grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db,
                            extra_env={**env, "CHAINSYNC_WORKERS": "1"}) as b, \
                grpc.insecure_channel(a.addr) as ca, grpc.insecure_channel(b.addr) as cb:  # fmt: skip
            sa, sb = jobs_pb2_grpc.JobServiceStub(ca), jobs_pb2_grpc.JobServiceStub(cb)
            job_id = sa.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            seen_on_b: list[tuple[float, int]] = []  # (when, version B answered)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = sb.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
                seen_on_b.append((time.time(), job.version))
                if job.state in TERMINAL:
                    break
                time.sleep(0.01)
            events = sa.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=1), timeout=10)
            written = [(e.sequence, e.time.ToNanoseconds() / 1e9) for e in events]
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED and len(written) > 10
    lags = []
    for version, at in written:
        first = next((when for when, v in seen_on_b if v >= version), None)
        assert first is not None, f"replica b never answered version {version}"
        lags.append(max(0.0, first - at))
    print(
        f"\nreplica b's lag behind a's writes: median {sorted(lags)[len(lags) // 2] * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
    )
    assert max(lags) <= 1.0, f"lag up to {max(lags):.3f} s (median {sorted(lags)[len(lags) // 2]:.3f} s)"
