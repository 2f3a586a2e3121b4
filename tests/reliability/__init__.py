"""The reliability suite: each case breaks one thing mid-job and asserts the end state.

Every job ends terminal with the records of an undisturbed reference sync (the
session ``stack`` server) or a clear error code; no duplicates, nothing lost.
``make test`` runs the short form; ``make soak`` (``CHAINSYNC_SOAK=1``) runs
the same cases longer: more jobs, longer outages, more rounds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from chainsync.v1 import jobs_pb2
from google.protobuf.json_format import MessageToDict
from psycopg import sql

from tests.stack import TERMINAL, wait_for_state

SOAK = os.environ.get("CHAINSYNC_SOAK", "") not in ("", "0")
PG_URL = os.environ.get("CHAINSYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = ("proposals", "petitions", "reports")


def scale(short, soak):
    """The CI value, or the soak value under ``make soak``."""
    return soak if SOAK else short


def records(stub, job_id: str) -> dict:
    result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    return {k: [MessageToDict(r) for r in getattr(result, k)] for k in KINDS}


def assert_no_duplicates(found: dict) -> None:
    for kind, items in found.items():
        ids = [r.get("id") for r in items]
        assert len(ids) == len(set(ids)), f"duplicate {kind} ids"


def reference_records(stub, **request) -> dict:
    """The records of an undisturbed sync of the same request on the session's server."""
    job_id = stub.StartSync(jobs_pb2.StartSyncRequest(**request)).job_id
    job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
    return records(stub, job_id)


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for pid {pid}")


@pytest.fixture(name="pg_schema")
def pg_schema_fixture() -> Iterator[tuple[str, str, str]]:
    """(store URL, schema, application_name): a fresh schema, dropped at the end. The URL's
    application_name tags this test's server connections, so a test can terminate only them."""
    schema = f"chainsync_test_{uuid.uuid4().hex}"
    app = f"chainsync_rel_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}?schema={schema}&application_name={app}", schema, app
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
