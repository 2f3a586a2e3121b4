"""Protobuf messages -> the JSON shapes of ASYNC-BLOCKCHAIN-SYNC.md (documented in rest_bridge/models.py).

Owns the conversion and ``FastJSON``, the response that renders it. Block
numbers, chain ids and uint256 values are decimal strings; times are RFC 3339.
The job object is built by hand (it is on the hot polling path); records go
through protobuf's JSON mapping, so their names are the proto's json names.
State and type names come from server/states.py, the record kinds from
server/kinds.py.
"""

from __future__ import annotations

from typing import Any

import orjson
from chainsync.v1 import jobs_pb2
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from server.kinds import KINDS
from server.states import STATE_NAME, TYPE_NAME


class FastJSON(JSONResponse):
    """JSONResponse rendered by orjson (several times faster on the polling path)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def stats_json(stats: jobs_pb2.JobStats) -> dict[str, Any]:
    out = {
        "blocksTotal": str(stats.blocks_total),
        "blocksDone": str(stats.blocks_done),
        "eventsFound": str(stats.events_found),
        "recordsTotal": str(stats.records_total),
        "recordsDone": str(stats.records_done),
        "blocksPerSecond": stats.blocks_per_second,
        "etaSeconds": stats.eta_seconds,
    }
    if stats.content_cids:  # IPFS content was resolved (docs/ipfs.md)
        for name in ("cids", "cached", "fetched", "failed", "unresolved"):
            out[f"content{name.title()}"] = str(getattr(stats, f"content_{name}"))
    return out


def job_json(job: jobs_pb2.Job) -> dict[str, Any]:
    """The spec's job object: id, type, status, progress, message, times, plus range, stats and error."""
    out: dict[str, Any] = {
        "id": job.id,
        "type": TYPE_NAME[job.type],
        "status": STATE_NAME[job.state],
        "progress": job.progress,
        "message": job.message,
        "createdAt": job.create_time.ToJsonString(),
    }
    if job.HasField("start_time"):
        out["startedAt"] = job.start_time.ToJsonString()
    if job.HasField("end_time"):
        out["endedAt"] = job.end_time.ToJsonString()
        if job.state == jobs_pb2.JOB_STATE_COMPLETED:
            out["completedAt"] = out["endedAt"]
    if job.to_block:
        out["fromBlock"] = str(job.from_block)
        out["toBlock"] = str(job.to_block)
    out["stats"] = stats_json(job.stats)
    if job.HasField("error"):
        out["error"] = job.error.message
        out["errorCode"] = job.error.code
    return out


def record_json(record: Any) -> dict[str, Any]:
    out = json_format.MessageToDict(record, always_print_fields_with_no_presence=True)
    out["created"] = out.get("created")  # null when the creating event is outside the range
    if not out.get("unresolved"):
        out.pop("unresolved", None)  # only when IPFS content was resolved and some of it was not
    return out


def result_summary_json(result: jobs_pb2.SyncResult) -> dict[str, Any]:
    """Everything of the result but its records."""
    return {
        "fromBlock": str(result.from_block),
        "toBlock": str(result.to_block),
        "toBlockHash": result.to_block_hash,
        "chainId": str(result.chain_id),
        "eventsCount": result.events_count,
        "processingTime": result.processing_time_ms,
        "totals": {kind.name: getattr(result, f"{kind.name}_total") for kind in KINDS},
    }


def result_json(result: jobs_pb2.SyncResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": True,
        "result": {
            **{kind.name: [record_json(r) for r in getattr(result, kind.name)] for kind in KINDS},
            **result_summary_json(result),
        },
        "completedAt": result.complete_time.ToJsonString(),
    }
    if result.next_page_token:
        body["nextPageToken"] = result.next_page_token
    return body
