"""What a request may hold: the StartSync rules and the limits on ids, pages and timeouts.

Bad input never reaches the thread pool: each rule here raises INVALID_ARGUMENT
naming the field. The block-range limits are the engine's
(server/engine/ranges.py); the bridge documents the same constants.
"""

from __future__ import annotations

import re
from typing import Any

from chainsync.v1 import jobs_pb2

from server.engine.ranges import MAX_BLOCKS_BACK, MAX_CONFIRMATIONS
from server.errors import invalid_argument
from server.states import TYPE_NAME

MAX_TIMEOUT_S = 24 * 60 * 60
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"  # an idempotency key (requestId / Idempotency-Key)
REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)  # used with fullmatch: no trailing newline slips through
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")  # fullmatch
MAX_RESULT_PAGE = 10_000
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def validate_start(request: jobs_pb2.StartSyncRequest, default_timeout_s: int) -> tuple[str, dict[str, Any], int]:
    """(job type, normalized request in JSON form, timeout) or INVALID_ARGUMENT naming the field."""
    if request.type not in TYPE_NAME:
        raise invalid_argument("type", f"unknown job type {request.type}")
    body: dict[str, Any] = {}
    explicit_range = request.HasField("from_block") or request.HasField("to_block")
    if request.HasField("blocks_back"):
        if not 1 <= request.blocks_back <= MAX_BLOCKS_BACK:
            raise invalid_argument(
                "blocksBack",
                f"must be between 1 and {MAX_BLOCKS_BACK:,}, got {request.blocks_back}",
                "INVALID_BLOCKS_BACK",
            )
        if explicit_range:
            raise invalid_argument("blocksBack", "cannot be combined with fromBlock/toBlock")
        if not request.is_full_sync:  # with isFullSync it is ignored, as older clients send both
            body["blocksBack"] = request.blocks_back
    if request.is_full_sync:
        if explicit_range:
            raise invalid_argument("isFullSync", "cannot be combined with fromBlock/toBlock")
        body["isFullSync"] = True
    if request.HasField("from_block"):
        body["fromBlock"] = request.from_block
    if request.HasField("to_block"):
        body["toBlock"] = request.to_block
    if explicit_range and "fromBlock" in body and "toBlock" in body and body["fromBlock"] > body["toBlock"]:
        raise invalid_argument("fromBlock", f"{body['fromBlock']} is after toBlock {body['toBlock']}", "INVALID_RANGE")
    if request.incremental or request.after_job_id:
        field = "incremental" if request.incremental else "after"
        if request.HasField("blocks_back") or request.is_full_sync or request.HasField("from_block"):
            raise invalid_argument(field, "cannot be combined with blocksBack, isFullSync or fromBlock")
        body["incremental"] = True
    if request.after_job_id:
        check_job_id(request.after_job_id, "after")
        body["afterJobId"] = request.after_job_id
    if request.HasField("confirmations"):
        if request.confirmations > MAX_CONFIRMATIONS:
            raise invalid_argument("confirmations", f"must be at most {MAX_CONFIRMATIONS}, got {request.confirmations}")
        body["confirmations"] = request.confirmations
    timeout_s = default_timeout_s
    if request.HasField("timeout_seconds"):
        if not 1 <= request.timeout_seconds <= MAX_TIMEOUT_S:
            raise invalid_argument(
                "timeoutSeconds", f"must be between 1 and {MAX_TIMEOUT_S}, got {request.timeout_seconds}"
            )
        timeout_s = request.timeout_seconds
        body["timeoutSeconds"] = timeout_s
    if request.request_id and not REQUEST_ID_RE.fullmatch(request.request_id):
        raise invalid_argument("requestId", "must be 1 to 128 letters, digits or . _ : -")
    return TYPE_NAME[request.type], body, timeout_s


def check_job_id(job_id: str, field: str = "jobId") -> None:
    if not UUID_RE.fullmatch(job_id):
        raise invalid_argument(field, f"{job_id[:64]!r} is not a job id (a UUID)", "INVALID_JOB_ID")
