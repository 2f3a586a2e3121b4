"""Protobuf messages -> the JSON shapes of ASYNC-BLOCKCHAIN-SYNC.md (documented in rest_bridge/models.py).

Owns the conversion and ``FastJSON``, the response that renders it. The types
follow the spec's seed (design.md): block numbers, counts, every stats field
and progress are JSON numbers; uint256 values and ids are decimal strings;
times are RFC 3339 UTC with milliseconds (``2026-11-30T12:53:26.847Z``). The
job object and its stats are built straight from the message (the status
route is the hottest path: no generic mapping there); the stats' fields are
JobStats' own (jobs.proto), every one of them. Records go through protobuf's
JSON mapping, so their names are the proto's json names. State and type
names come from server/states.py, the record kinds from server/kinds.py.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from chainsync.v1 import jobs_pb2
from fastapi.responses import JSONResponse
from google.protobuf import json_format, timestamp_pb2

from server.kinds import KINDS
from server.states import STATE_NAME, TYPE_NAME

# JobStats' fields as (JSON name, field name): the stats object carries every one, as numbers.
STATS_FIELDS: tuple[tuple[str, str], ...] = tuple((f.json_name, f.name) for f in jobs_pb2.JobStats.DESCRIPTOR.fields)


class FastJSON(JSONResponse):
    """JSONResponse rendered by orjson (several times faster on the polling path)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def rfc3339(ts: timestamp_pb2.Timestamp) -> str:
    """UTC with milliseconds: 2026-11-30T12:53:26.847Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts.seconds)) + f".{ts.nanos // 1_000_000:03d}Z"


def stats_json(stats: jobs_pb2.JobStats) -> dict[str, Any]:
    """Every JobStats field under its JSON name, as a number."""
    return {json_name: getattr(stats, name) for json_name, name in STATS_FIELDS}


def job_json(job: jobs_pb2.Job) -> dict[str, Any]:
    """The spec's job object: id, type, status, progress, message, times, plus range, stats and error."""
    out: dict[str, Any] = {
        "id": job.id,
        "type": TYPE_NAME[job.type],
        "status": STATE_NAME[job.state],
        "progress": job.progress,
        "message": job.message,
        "createdAt": rfc3339(job.create_time),
    }
    if job.HasField("start_time"):
        out["startedAt"] = rfc3339(job.start_time)
    if job.HasField("end_time"):
        out["endedAt"] = rfc3339(job.end_time)
        if job.state == jobs_pb2.JOB_STATE_COMPLETED:
            out["completedAt"] = out["endedAt"]
    if job.to_block:
        out["fromBlock"] = job.from_block
        out["toBlock"] = job.to_block
    out["stats"] = stats_json(job.stats)
    if job.HasField("error"):
        out["error"] = job.error.message
        out["errorCode"] = job.error.code
    return out


def record_json(record: Any) -> dict[str, Any]:
    out = json_format.MessageToDict(record, always_print_fields_with_no_presence=True)
    created = out.get("created")  # null when the creating event is outside the range
    out["created"] = {**created, "blockNumber": record.created.block_number} if created else None
    if not out.get("unresolved"):
        out.pop("unresolved", None)  # only when IPFS content was resolved and some of it was not
    return out


def result_summary_json(result: jobs_pb2.SyncResult) -> dict[str, Any]:
    """Everything of the result but its records: range, totals, and where it leaves a view (docs/reorgs.md)."""
    reorg = result.reorg
    return {
        "fromBlock": result.from_block,
        "toBlock": result.to_block,
        "toBlockHash": result.to_block_hash,
        "chainId": result.chain_id,
        "eventsCount": result.events_count,
        "processingTime": result.processing_time_ms,
        "totals": {kind.name: getattr(result, f"{kind.name}_total") for kind in KINDS},
        "cursor": {
            "jobId": result.cursor.job_id,
            "toBlock": result.cursor.to_block,
            "toBlockHash": result.cursor.to_block_hash,
        },
        "after": result.after_job_id or None,
        "reorg": {"forkBlock": reorg.fork_block, "droppedBlocks": reorg.dropped_blocks}
        if result.HasField("reorg")
        else None,
        "dropped": {kind.name: list(getattr(result.dropped, kind.name)) for kind in KINDS},
    }


def result_json(result: jobs_pb2.SyncResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": True,
        "result": {
            **{kind.name: [record_json(r) for r in getattr(result, kind.name)] for kind in KINDS},
            **result_summary_json(result),
        },
        "completedAt": rfc3339(result.complete_time),
    }
    if result.next_page_token:
        body["nextPageToken"] = result.next_page_token
    return body
