"""200 jobs submitted at once across two replicas on one PostgreSQL schema."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from psycopg import sql

from tests.processes import grpc_server
from tests.reliability import PG_URL, assert_no_duplicates, pg_schema_fixture, records, reference_records, scale  # noqa: F401
from tests.stack import wait_until

JOBS = scale(200, 1000)
RANGE = {"from_block": 2300, "to_block": 2368}  # small: the last blocks of the demo chain


def test_a_burst_of_jobs_across_two_replicas_each_runs_once_with_the_exact_result(devnet, stack, pg_schema) -> None:
    db, schema, _app = pg_schema
    reference = reference_records(stack.stub, **RANGE)
    env = {"CHAINSYNC_LEASE_SECONDS": "5", "CHAINSYNC_WORKERS": "4"}
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as a, \
            grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as b, \
            grpc.insecure_channel(a.addr) as ca, grpc.insecure_channel(b.addr) as cb:  # fmt: skip
        stubs = [jobs_pb2_grpc.JobServiceStub(ca), jobs_pb2_grpc.JobServiceStub(cb)]

        def start(n: int) -> str:
            return stubs[n % 2].StartSync(jobs_pb2.StartSyncRequest(**RANGE), timeout=30).job_id

        with ThreadPoolExecutor(32) as pool:
            ids = list(pool.map(start, range(JOBS)))
        assert len(set(ids)) == JOBS

        def states() -> dict:
            with psycopg.connect(PG_URL) as conn:
                query = sql.SQL("SELECT state, count(*) FROM {}.jobs GROUP BY state").format(sql.Identifier(schema))
                return dict(conn.execute(query).fetchall())

        wait_until(lambda: states() == {"completed": JOBS}, scale(90, 400), 0.25, f"{JOBS} jobs to complete")
        with psycopg.connect(PG_URL) as conn:
            query = sql.SQL("SELECT attempts, count(*) FROM {}.jobs GROUP BY attempts").format(sql.Identifier(schema))
            assert dict(conn.execute(query).fetchall()) == {1: JOBS}, "every job claimed exactly once"
            query = sql.SQL("SELECT count(DISTINCT job_id) FROM {}.results").format(sql.Identifier(schema))
            assert conn.execute(query).fetchone()[0] == JOBS, "every job has its result"

        def check(n: int) -> None:
            found = records(stubs[(n + 1) % 2], ids[n])  # read through the other replica
            assert_no_duplicates(found)
            assert found == reference, f"job {ids[n]}"

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(check, range(JOBS)))
