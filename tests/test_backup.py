"""`chainsync backup`: a copy of the SQLite job store taken while the server writes is whole and usable.

The restore test starts a second server on the copy and reads the finished
job's result through gRPC, as an operator restoring a backup would.
"""

from __future__ import annotations

import subprocess
import sys

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from tests.processes import REPO, grpc_server
from tests.stack import TERMINAL, slow_server, wait_for_state


def backup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "backup", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def result_of(stub: jobs_pb2_grpc.JobServiceStub, job_id: str) -> jobs_pb2.SyncResult:
    result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id), timeout=30)
    result.ClearField("complete_time")
    return result


def test_backup_while_a_job_runs_restores_to_a_working_server(devnet, tmp_path) -> None:
    db = tmp_path / "jobs.sqlite3"
    copy = tmp_path / "backup" / "jobs-copy.sqlite3"
    copy.parent.mkdir()
    with slow_server(devnet, db) as server, grpc.insecure_channel(server.addr) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        done = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=300)).job_id
        wait_for_state(stub, done, (jobs_pb2.JOB_STATE_COMPLETED,), timeout_s=120)
        expected = result_of(stub, done)
        running = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
        wait_for_state(stub, running, (jobs_pb2.JOB_STATE_RUNNING,))

        made = backup("--db", str(db), str(copy))  # the server keeps writing the running job's progress meanwhile

        assert made.returncode == 0, made.stderr
        assert f"to {copy}: 2 jobs, schema version" in made.stdout
        stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=running))
        wait_for_state(stub, running, TERMINAL)

    assert not copy.with_name(copy.name + ".partial").exists()
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=copy) as restored:
        with grpc.insecure_channel(restored.addr) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            assert result_of(stub, done) == expected
            assert len(expected.proposals) + len(expected.petitions) + len(expected.reports) > 0
            # The job that was running when the copy was taken is finished by the restored server, as after a crash.
            wait_for_state(stub, running, (jobs_pb2.JOB_STATE_COMPLETED,), timeout_s=120)


def test_backup_refuses_what_it_cannot_do_and_says_why(tmp_path) -> None:
    missing = backup("--db", str(tmp_path / "nope.sqlite3"), str(tmp_path / "out.sqlite3"))
    assert missing.returncode == 1 and "CHAINSYNC_DB: no job store at" in missing.stderr

    not_a_store = tmp_path / "notes.sqlite3"
    not_a_store.write_bytes(b"this is not a database" * 100)
    refused = backup("--db", str(not_a_store), str(tmp_path / "out.sqlite3"))
    assert refused.returncode == 1 and "is not a chainsync job store" in refused.stderr
    assert not (tmp_path / "out.sqlite3").exists() and not (tmp_path / "out.sqlite3.partial").exists()

    taken = tmp_path / "taken.sqlite3"
    taken.write_text("keep me")
    exists = backup("--db", str(not_a_store), str(taken))
    assert exists.returncode == 1 and "destination:" in exists.stderr and taken.read_text() == "keep me"

    postgres = backup("--db", "postgresql://postgres@127.0.0.1:5432/test", str(tmp_path / "out.sqlite3"))
    assert postgres.returncode == 1 and "pg_dump" in postgres.stderr
