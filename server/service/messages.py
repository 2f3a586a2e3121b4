"""Store records as protobuf messages: jobs, their stats, and result records.

Job states and types translate through server/states.py, record messages
through server/kinds.py (``<Kind.message>`` of chainsync.v1).
"""

from __future__ import annotations

from typing import Any

from chainsync.v1 import jobs_pb2
from google.protobuf import json_format, timestamp_pb2

from server import logs
from server.jobs.store import JobRecord, ResultSummary
from server.kinds import KINDS
from server.states import STATE_ENUM, TYPE_ENUM

RECORD_MESSAGES: dict[str, Any] = {kind.name: getattr(jobs_pb2, kind.message) for kind in KINDS}


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def job_message(job: JobRecord) -> jobs_pb2.Job:
    msg = jobs_pb2.Job(
        id=job.id,
        type=TYPE_ENUM[job.type],
        state=STATE_ENUM[job.state],
        progress=job.progress,
        message=job.message,
        create_time=timestamp(job.created_at),
        start_time=timestamp(job.started_at),
        end_time=timestamp(job.ended_at),
        from_block=job.from_block or 0,
        to_block=job.to_block or 0,
        version=job.version,
        request=json_format.ParseDict(
            {k: v for k, v in job.request.items() if k != logs.REQUEST_ID_KEY}, jobs_pb2.StartSyncRequest()
        ),
        stats=json_format.ParseDict(job.stats, jobs_pb2.JobStats(), ignore_unknown_fields=True),
    )
    if job.error_code:
        msg.error.code = job.error_code
        msg.error.message = job.error_message or ""
    return msg


def record_message(kind: str, record: dict[str, Any]) -> Any:
    return json_format.ParseDict({k: v for k, v in record.items() if v is not None}, RECORD_MESSAGES[kind]())


def result_message(job: JobRecord, summary: ResultSummary) -> jobs_pb2.SyncResult:
    """A completed job's result without its records: range, cursor, reorg, dropped ids, totals."""
    result = jobs_pb2.SyncResult(
        job_id=job.id,
        from_block=summary.from_block,
        to_block=summary.to_block,
        to_block_hash=summary.to_block_hash,
        chain_id=summary.chain_id,
        processing_time_ms=summary.processing_time_ms,
        complete_time=timestamp(job.ended_at),
        events_count=summary.events_count,
        cursor=jobs_pb2.Cursor(job_id=job.id, to_block=summary.to_block, to_block_hash=summary.to_block_hash),
        after_job_id=summary.after_job_id or "",
        dropped=jobs_pb2.DroppedIds(**{kind: ids for kind, ids in summary.dropped.items() if kind in RECORD_MESSAGES}),
        **{f"{kind.name}_total": summary.record_counts.get(kind.name, 0) for kind in KINDS},
    )
    if summary.reorg:
        result.reorg.fork_block = summary.reorg["fork_block"]
        result.reorg.dropped_blocks = summary.reorg["dropped_blocks"]
    return result
