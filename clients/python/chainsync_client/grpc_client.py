"""GrpcClient: the chainsync JobService over gRPC (the product's own API)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from chainsync_client._base import JOB_STATES, JOB_TYPES, MAX_RECONNECTS, Client, backoff, check_choice, cursor_id
from chainsync_client.errors import ChainsyncError, ServiceUnavailable, WaitTimeout, error_for
from chainsync_client.models import RECORD_KINDS, Cursor, Job, JobEvent, JobPage, JobStats, Reorg, SyncResult

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),  # a whole result comes in one message
    ("grpc.keepalive_time_ms", 30_000),  # long watches stay alive through proxies
]
STATE_OF = {v: k.removeprefix("JOB_STATE_").lower() for k, v in jobs_pb2.JobState.items()}
TYPE_OF = {v: k.removeprefix("JOB_TYPE_").lower() for k, v in jobs_pb2.JobType.items()}
TYPE_OF[jobs_pb2.JOB_TYPE_UNSPECIFIED] = "blockchain_sync"


def _time(ts: Any, present: bool = True) -> datetime | None:
    """UTC, to the millisecond: what the REST API carries, so that both clients give the same value."""
    if not present:
        return None
    return datetime.fromtimestamp(ts.seconds, UTC).replace(microsecond=ts.nanos // 1_000_000 * 1000)


def job_from_proto(job: jobs_pb2.Job) -> Job:
    return Job(
        id=job.id,
        type=TYPE_OF[job.type],
        status=STATE_OF[job.state],
        progress=job.progress,
        message=job.message,
        created_at=_time(job.create_time),
        started_at=_time(job.start_time, job.HasField("start_time")),
        ended_at=_time(job.end_time, job.HasField("end_time")),
        from_block=job.from_block if job.to_block else None,
        to_block=job.to_block or None,
        stats=JobStats(**{f.name: getattr(job.stats, f.name) for f in fields(JobStats)}),
        error=job.error.message if job.HasField("error") else None,
        error_code=job.error.code if job.HasField("error") else None,
    )


def record_from_proto(record: Any) -> dict[str, Any]:
    """The same dict the REST API sends for a record."""
    out = json_format.MessageToDict(record, always_print_fields_with_no_presence=True)
    created = out.get("created")  # None when the creating event is outside the range
    out["created"] = {**created, "blockNumber": record.created.block_number} if created else None
    if not out.get("unresolved"):
        out.pop("unresolved", None)  # as the REST API: only when some IPFS content was not resolved
    return out


def _error(err: grpc.RpcError, target: str) -> ChainsyncError:
    reason, details = None, {}
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, details = info.reason, dict(info.metadata)
    code = err.code()
    if reason is None and code == grpc.StatusCode.UNAVAILABLE:
        return ServiceUnavailable(
            f"the chainsync gRPC server at {target} is unreachable ({err.details()})", "GRPC_UNAVAILABLE"
        )
    return error_for(err.details() or code.name, reason, details, code.name)


class GrpcClient(Client):
    """``GrpcClient("127.0.0.1:50051", token=..., tls_ca=...)``; target, token and tls_ca default to
    CHAINSYNC_GRPC_ADDR, CHAINSYNC_API_TOKEN and CHAINSYNC_TLS_CA. ``timeout`` bounds each unary call, in seconds."""

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        tls_ca: str | None = None,
    ) -> None:
        self.target = target or os.environ.get("CHAINSYNC_GRPC_ADDR") or "127.0.0.1:50051"
        token = token if token is not None else os.environ.get("CHAINSYNC_API_TOKEN")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        tls_ca = tls_ca if tls_ca is not None else os.environ.get("CHAINSYNC_TLS_CA")
        if tls_ca:  # a PEM file of the certificate(s) to trust: talk TLS
            with open(tls_ca, "rb") as pem:
                credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
            self._channel = grpc.secure_channel(self.target, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as err:
            raise _error(err, self.target) from None

    def start_sync(
        self,
        blocks_back: int | None = None,
        *,
        full: bool = False,
        type: str = "blockchain_sync",
        request_id: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        incremental: bool = False,
        confirmations: int | None = None,
        timeout_seconds: int | None = None,
        after: str | Cursor | None = None,
    ) -> Job:
        check_choice("type", type, JOB_TYPES)
        request = jobs_pb2.StartSyncRequest(
            is_full_sync=full,
            type=jobs_pb2.JobType.Value(f"JOB_TYPE_{type.upper()}"),
            request_id=request_id or "",
            incremental=incremental,
            after_job_id=cursor_id(after) or "",
        )
        for name, value in [
            ("blocks_back", blocks_back),
            ("from_block", from_block),
            ("to_block", to_block),
            ("confirmations", confirmations),
            ("timeout_seconds", timeout_seconds),
        ]:
            if value is not None:
                try:
                    setattr(request, name, value)
                except (ValueError, TypeError) as exc:
                    raise error_for(f"{name}: {exc}", "INVALID_ARGUMENT", {"field": name}, 400) from None
        return job_from_proto(self._call("StartSync", request).job)

    def status(self, job_id: str) -> Job:
        return job_from_proto(self._call("GetJob", jobs_pb2.GetJobRequest(job_id=job_id)))

    def _page(self, job_id: str, page_size: int, page_token: str) -> jobs_pb2.SyncResult:
        return self._call(
            "GetResult", jobs_pb2.GetResultRequest(job_id=job_id, page_size=page_size, page_token=page_token)
        )

    def result(self, job_id: str, *, page_size: int | None = None, page_token: str | None = None) -> SyncResult:
        r = self._page(job_id, page_size or 0, page_token or "")
        return SyncResult(
            job_id=r.job_id,
            **{kind: [record_from_proto(x) for x in getattr(r, kind)] for kind in RECORD_KINDS},
            from_block=r.from_block,
            to_block=r.to_block,
            to_block_hash=r.to_block_hash,
            chain_id=r.chain_id,
            events_count=r.events_count,
            processing_time_ms=r.processing_time_ms,
            completed_at=_time(r.complete_time, r.HasField("complete_time")),
            totals={kind: getattr(r, f"{kind}_total") for kind in RECORD_KINDS},
            cursor=Cursor(r.cursor.job_id, r.cursor.to_block, r.cursor.to_block_hash),
            after=r.after_job_id or None,
            reorg=Reorg(r.reorg.fork_block, r.reorg.dropped_blocks) if r.HasField("reorg") else None,
            dropped={kind: list(getattr(r.dropped, kind)) for kind in RECORD_KINDS},
            next_page_token=r.next_page_token or None,
        )

    def iter_records(self, job_id: str, page_size: int = 500) -> Iterator[tuple[str, dict[str, Any]]]:
        page = self._page(job_id, page_size, "")
        total = sum(getattr(page, f"{kind}_total") for kind in RECORD_KINDS)
        for _ in range(total // page_size + 2):  # bounded: at most this many pages
            for kind in RECORD_KINDS:
                for record in getattr(page, kind):
                    yield kind, record_from_proto(record)
            if not page.next_page_token:
                return
            page = self._page(job_id, page_size, page.next_page_token)

    def watch(self, job_id: str, *, after_sequence: int = 0, timeout: float | None = None) -> Iterator[JobEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last, failures = after_sequence, 0
        for _ in range(1_000_000):  # bounded; each round either brings events or counts as a failure
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            call = self._stub.WatchJob(
                jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=last), metadata=self._metadata, timeout=remaining
            )
            try:
                for message in call:
                    failures, last = 0, message.sequence
                    event = JobEvent(message.sequence, job_from_proto(message.job))
                    yield event
                    if event.job.done:
                        return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise WaitTimeout(
                        f"job {job_id} did not end within {timeout} s", "WAIT_TIMEOUT", {"jobId": job_id}
                    ) from None
                if err.code() != grpc.StatusCode.UNAVAILABLE or last == after_sequence:
                    raise _error(err, self.target) from None
            finally:
                call.cancel()
            failures += 1  # the stream broke (or ended early as the server stopped): resume after `last`
            if failures > MAX_RECONNECTS:
                raise ServiceUnavailable(
                    f"lost the watch of job {job_id} at {self.target} and could not resume it",
                    "GRPC_UNAVAILABLE",
                    {"jobId": job_id},
                )
            time.sleep(backoff(failures))

    def cancel(self, job_id: str) -> Job:
        return job_from_proto(self._call("CancelJob", jobs_pb2.CancelJobRequest(job_id=job_id)))

    def delete(self, job_id: str) -> None:
        self._call("DeleteJob", jobs_pb2.DeleteJobRequest(job_id=job_id))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 20,
        page: int | None = None,
        page_token: str | None = None,
    ) -> JobPage:
        check_choice("status", status, JOB_STATES)
        check_choice("type", type, JOB_TYPES)
        response = self._call(
            "ListJobs",
            jobs_pb2.ListJobsRequest(
                state=jobs_pb2.JobState.Value(f"JOB_STATE_{status.upper()}") if status else 0,
                type=jobs_pb2.JobType.Value(f"JOB_TYPE_{type.upper()}") if type else 0,
                page_size=page_size,
                page_token=page_token or "",
                skip=(page - 1) * page_size if page else 0,
            ),
        )
        return JobPage(
            [job_from_proto(j) for j in response.jobs], response.total_size, response.next_page_token or None
        )

    def close(self) -> None:
        self._channel.close()
