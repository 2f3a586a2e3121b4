"""The JobService as a job engine: durable, cancellable, bounded, resumable.

Every test runs a real `chainsync serve` process on a loopback port against
the demo devnet. "Slow" servers fetch logs two blocks at a time, so that a
job on the demo chain lasts long enough to cancel, kill or watch mid-way.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import grpc
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.jobs.store import JobStore, SQLiteConnector
from tests.processes import grpc_server, silent_rpc, stop_process
from tests.stack import TERMINAL, slow_server, wait_for_state, wait_until

RUNNING = (jobs_pb2.JOB_STATE_RUNNING,)


def stub_for(addr: str, token: str | None = None):
    channel = grpc.insecure_channel(addr)
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    return channel, stub


def records_of(result: jobs_pb2.SyncResult) -> dict:
    return {kind: [MessageToDict(r) for r in getattr(result, kind)] for kind in ("proposals", "petitions", "reports")}


def full_sync_records(stub, **request) -> tuple[str, dict]:
    job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True, **request)).job_id
    job = wait_for_state(stub, job_id, TERMINAL, timeout_s=180)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job
    return job_id, records_of(stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id)))


def test_cancel_stops_a_running_job_within_two_seconds(devnet, tmp_path) -> None:
    with slow_server(devnet, tmp_path / "jobs.db") as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.blocks_done > 0)
            t0 = time.monotonic()
            stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
            job = wait_for_state(stub, job_id, TERMINAL, timeout_s=5)
            elapsed = time.monotonic() - t0
            assert job.state == jobs_pb2.JOB_STATE_CANCELLED
            assert elapsed < 2.0, f"cancel took {elapsed:.2f} s"
            assert job.stats.blocks_done > 0, "what the job had done stays recorded"
            with pytest.raises(grpc.RpcError) as err:
                stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            time.sleep(0.5)
            assert stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).state == jobs_pb2.JOB_STATE_CANCELLED


def test_a_node_that_never_answers_does_not_hold_up_cancel_timeout_or_shutdown(devnet, tmp_path) -> None:
    """The node accepts the job's request and never answers (its HTTP timeout is 30 s): a cancel still
    ends the job within two seconds, the job's timeout still fails it on time, and SIGTERM still hands
    the running job back to pending at once."""
    db = tmp_path / "jobs.db"
    with silent_rpc() as rpc_url, grpc_server(rpc_url=rpc_url, deployment_path=devnet.deployment_path, db=db) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            cancelled = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=10)).job_id
            timed_out = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=10, timeout_seconds=2)).job_id
            t_start = time.monotonic()
            wait_for_state(stub, cancelled, RUNNING)
            time.sleep(0.5)  # the job is inside its first request to the node
            t0 = time.monotonic()
            stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=cancelled))
            assert wait_for_state(stub, cancelled, TERMINAL, timeout_s=10).state == jobs_pb2.JOB_STATE_CANCELLED
            assert time.monotonic() - t0 < 2.0, f"cancel took {time.monotonic() - t0:.2f} s"

            job = wait_for_state(stub, timed_out, TERMINAL, timeout_s=10)
            assert (job.state, job.error.code) == (jobs_pb2.JOB_STATE_FAILED, "JOB_TIMEOUT")
            assert time.monotonic() - t_start < 5.0, "the 2 s timeout ended the job, not the node's 30 s"

            released = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=10)).job_id
            wait_for_state(stub, released, RUNNING)
        time.sleep(0.5)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 3.0, f"shutdown took {time.monotonic() - t0:.2f} s"
    job = JobStore(SQLiteConnector(db)).get(released)
    assert job.state == "pending" and "waiting to resume" in job.message, "released to resume from its checkpoint"


def test_a_cancelled_pending_job_never_starts_and_delete_cancels_a_running_one(devnet, tmp_path) -> None:
    with slow_server(devnet, tmp_path / "jobs.db", CHAINSYNC_WORKERS="1") as server:
        channel, stub = stub_for(server.addr)
        with channel:
            first = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            second = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_for_state(stub, first, RUNNING)
            cancelled = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=second))
            assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
            stub.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=first))
            with pytest.raises(grpc.RpcError) as err:
                stub.GetJob(jobs_pb2.GetJobRequest(job_id=first))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            time.sleep(1.0)  # the worker is free now: the cancelled pending job must still not start
            job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=second))
            assert job.state == jobs_pb2.JOB_STATE_CANCELLED and not job.HasField("start_time")


def test_a_job_past_its_timeout_fails_with_job_timeout(devnet, tmp_path) -> None:
    with slow_server(devnet, tmp_path / "jobs.db") as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True, timeout_seconds=1)).job_id
            job = wait_for_state(stub, job_id, TERMINAL, timeout_s=10)
            assert job.state == jobs_pb2.JOB_STATE_FAILED
            assert job.error.code == "JOB_TIMEOUT"
            assert "timeout of 1 s" in job.error.message


def test_sigkill_mid_job_then_restart_resumes_from_the_checkpoint_with_the_same_result(stack, devnet, tmp_path) -> None:
    _, reference = full_sync_records(stack.stub)
    db = tmp_path / "jobs.db"
    with slow_server(devnet, db) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).progress >= 20, 60)
            before = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            resumed = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
            assert resumed.state == jobs_pb2.JOB_STATE_COMPLETED, resumed
            events = list(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=1), timeout=10))
            messages = [e.job.message for e in events]
            assert any("Resuming" in m for m in messages), messages
            # It did not start over: it resumed with at least the blocks done before the kill.
            resuming = next(e.job for e in events if e.job.message.startswith("Resuming"))
            assert resuming.stats.blocks_done >= before.stats.blocks_done > 0
            result = records_of(stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id)))
            assert result == reference


def test_sigterm_lets_the_running_job_go_back_to_pending_and_it_resumes(devnet, tmp_path) -> None:
    db = tmp_path / "jobs.db"
    with slow_server(devnet, db) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).progress >= 10, 60)
        t0 = time.monotonic()
        stop_process(server.proc)
        assert time.monotonic() - t0 < 8, "graceful shutdown must be bounded"
        assert server.proc.returncode == 0
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
            assert job.state == jobs_pb2.JOB_STATE_COMPLETED


def test_a_watcher_that_reconnects_mid_job_misses_nothing(devnet, tmp_path) -> None:
    with slow_server(devnet, tmp_path / "jobs.db") as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            first_part = []
            for event in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=60):
                first_part.append(event)
                if len(first_part) == 5:
                    break  # the client goes away mid-job
            assert first_part[-1].job.state == jobs_pb2.JOB_STATE_RUNNING
            time.sleep(0.5)  # events happen while nobody watches
            rest = list(
                stub.WatchJob(
                    jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=first_part[-1].sequence), timeout=120
                )
            )
            assert rest[-1].job.state == jobs_pb2.JOB_STATE_COMPLETED
            sequences = [e.sequence for e in first_part[1:] + rest]
            assert sequences == list(range(first_part[1].sequence, rest[-1].sequence + 1)), "a gap or a replay"
            progress = [e.job.progress for e in first_part + rest]
            assert progress == sorted(progress)
            after_the_end = list(
                stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=rest[-1].sequence), timeout=10)
            )
            assert after_the_end == [], "resuming after the last event of a finished job ends the stream at once"


def test_fifty_jobs_at_once_on_two_workers_all_complete(stack, devnet, tmp_path) -> None:
    with grpc_server(
        rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db", workers=2
    ) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            ids = [stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=200 + i)).job_id for i in range(50)]

            def all_done() -> list[jobs_pb2.Job] | None:
                jobs = [stub.GetJob(jobs_pb2.GetJobRequest(job_id=i)) for i in ids]
                return jobs if all(j.state in TERMINAL for j in jobs) else None

            jobs = wait_until(all_done, 180, interval_s=0.2)
            assert [j.state for j in jobs] == [jobs_pb2.JOB_STATE_COMPLETED] * 50
            # Never more than two at once: at each job's start, count the jobs running then.
            spans = [(j.start_time.ToNanoseconds(), j.end_time.ToNanoseconds()) for j in jobs]
            assert max(sum(s <= start < e for s, e in spans) for start, _ in spans) <= 2
            # Claimed in the order they were started.
            assert [j.id for j in sorted(jobs, key=lambda j: j.start_time.ToNanoseconds())] == ids
            listed = stub.ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_COMPLETED, page_size=100))
            assert listed.total_size == 50


def test_same_request_id_returns_the_same_job(stack) -> None:
    key = f"test-{uuid.uuid4()}"
    first = stack.stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=50, request_id=key))
    again = stack.stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=50, request_id=key))
    assert again.job_id == first.job_id
    other = stack.stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=50, request_id=key + "-2"))
    assert other.job_id != first.job_id


def test_list_jobs_filters_pages_and_counts(devnet, tmp_path) -> None:
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db") as server:
        channel, stub = stub_for(server.addr)
        with channel:
            kinds = [jobs_pb2.JOB_TYPE_PROPOSALS_SYNC] * 3 + [jobs_pb2.JOB_TYPE_REPORTS_SYNC] * 2
            ids = [stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=100, type=t)).job_id for t in kinds]
            for job_id in ids:
                wait_for_state(stub, job_id, TERMINAL)
            seen, token = [], ""
            for _ in range(10):
                page = stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=2, page_token=token))
                assert page.total_size == 5
                seen += [j.id for j in page.jobs]
                token = page.next_page_token
                if not token:
                    break
            assert seen == list(reversed(ids)), "newest first, each once"
            proposals = stub.ListJobs(jobs_pb2.ListJobsRequest(type=jobs_pb2.JOB_TYPE_PROPOSALS_SYNC))
            assert proposals.total_size == 3 and all(j.type == jobs_pb2.JOB_TYPE_PROPOSALS_SYNC for j in proposals.jobs)
            result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=ids[-1]))
            assert not result.proposals and not result.petitions, "a reports_sync returns only reports"
            with pytest.raises(grpc.RpcError) as err:
                stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=101))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:
                stub.ListJobs(jobs_pb2.ListJobsRequest(page_token="garbage"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_finished_jobs_are_removed_after_the_retention_period(devnet, tmp_path) -> None:
    with grpc_server(
        rpc_url=devnet.url,
        deployment_path=devnet.deployment_path,
        db=tmp_path / "j.db",
        extra_env={"CHAINSYNC_RETENTION": "2"},
    ) as server:
        channel, stub = stub_for(server.addr)
        with channel:
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=10)).job_id
            wait_for_state(stub, job_id, TERMINAL)

            def gone() -> bool:
                try:
                    stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
                    return False
                except grpc.RpcError as err:
                    return err.code() == grpc.StatusCode.NOT_FOUND

            wait_until(gone, 15, interval_s=0.2)


def test_token_auth_refuses_strangers_but_health_and_reflection_stay_open(devnet, tmp_path) -> None:
    token = "s3cret-" + uuid.uuid4().hex
    with grpc_server(
        rpc_url=devnet.url,
        deployment_path=devnet.deployment_path,
        db=tmp_path / "j.db",
        extra_env={"CHAINSYNC_API_TOKEN": token},
    ) as server:
        with grpc.insecure_channel(server.addr) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            for metadata in [(), (("authorization", "Bearer wrong"),)]:
                with pytest.raises(grpc.RpcError) as err:
                    stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=5), metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as err:
                    list(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=str(uuid.uuid4())), metadata=metadata))
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = stub.StartSync(
                jobs_pb2.StartSyncRequest(blocks_back=5), metadata=(("authorization", f"Bearer {token}"),)
            )
            assert ok.job_id

            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = list(
                reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            )
            names = {s.name for s in answers[0].list_services_response.service}
            assert "chainsync.v1.JobService" in names and "grpc.health.v1.Health" in names


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_two_hundred_watchers_on_one_job_cost_no_thread_each(devnet, tmp_path) -> None:
    import asyncio

    with slow_server(devnet, tmp_path / "jobs.db") as server:
        threads_before = _threads(server.proc.pid)

        async def watch_all() -> tuple[list[list[jobs_pb2.JobEvent]], int]:
            async with grpc.aio.insecure_channel(server.addr) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                job_id = (await stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True))).job_id

                async def watch() -> list[jobs_pb2.JobEvent]:
                    return [e async for e in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=120)]

                tasks = [asyncio.create_task(watch()) for _ in range(200)]
                await asyncio.sleep(1.0)
                peak = _threads(server.proc.pid)
                return await asyncio.gather(*tasks), peak

        streams, peak_threads = asyncio.run(watch_all())
        assert all(s[-1].job.state == jobs_pb2.JOB_STATE_COMPLETED for s in streams)
        assert peak_threads - threads_before < 20, (threads_before, peak_threads)
