"""The PostgreSQL store briefly unreachable: the server's connections are terminated mid-job."""

from __future__ import annotations

import time

import grpc
import psycopg
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from psycopg import sql

from tests.fault_proxy import FaultProxy, Faults
from tests.processes import grpc_server
from tests.reliability import PG_URL, assert_no_duplicates, pg_schema_fixture, records, reference_records, scale  # noqa: F401
from tests.stack import TERMINAL, wait_for_state, wait_until

KILLS = scale(3, 12)


def terminate_backends(app: str) -> int:
    """Terminates the connections of this test's server only: this database, its application_name."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = %s",
            (app,),
        ).fetchall()
    return len(rows)


def test_store_connections_terminated_mid_job_the_job_still_ends_correct(devnet, stack, pg_schema) -> None:
    db, schema, app = pg_schema
    reference = reference_records(stack.stub, is_full_sync=True)
    # One request at a time, 20 ms each: the job outlasts the kills (about 1.2 s) by a few seconds.
    env = {"CHAINSYNC_LOG_CHUNK": "20", "CHAINSYNC_LEASE_SECONDS": "3", "CHAINSYNC_RPC_CONCURRENCY": "1"}
    with FaultProxy(devnet.url, Faults(delay_s=0.02)) as proxy:
        with grpc_server(rpc_url=proxy.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as server, \
                grpc.insecure_channel(server.addr) as channel:  # fmt: skip
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.blocks_done > 0, 60)
            killed = 0
            for _ in range(KILLS):
                killed += terminate_backends(app)
                time.sleep(0.4)
            assert killed > 0, "the server's connections were found and terminated"
            after = _get(stub, job_id, terminal_only=False)
            assert after is None or after.state == jobs_pb2.JOB_STATE_RUNNING, "the kills landed mid-job"
            job = wait_until(lambda: _get(stub, job_id), 120, 0.2, f"job {job_id} to end")
            # What happens: the pool replaces the broken connections and the job completes with the exact records.
            assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
            found = records(stub, job_id)
            assert_no_duplicates(found)
            assert found == reference
            with psycopg.connect(PG_URL) as conn:
                query = sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state").format(sql.Identifier(schema))
                assert dict(conn.execute(query).fetchall()) == {"completed": 1}
            again = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=50)).job_id
            assert wait_for_state(stub, again, TERMINAL, timeout_s=60).state == jobs_pb2.JOB_STATE_COMPLETED


def _get(stub, job_id: str, terminal_only: bool = True) -> jobs_pb2.Job | None:
    """The job (once terminal by default); None while the server's store calls fail."""
    try:
        job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
    except grpc.RpcError:
        return None
    return job if job.state in TERMINAL or not terminal_only else None
