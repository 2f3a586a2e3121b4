"""What the job store hands out: a job, a completed job's result summary, a page of the job list."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from server.states import PENDING, TERMINAL

# Where a page of the job list ends: (created_at, id) of its last job; the next page starts after it.
JobPosition = tuple[float, str]


@dataclass
class JobRecord:
    id: str
    type: str  # a job type of server/kinds.py (blockchain_sync, ...)
    request: dict[str, Any]  # the StartSyncRequest as received, in JSON form
    timeout_s: int
    state: str = PENDING
    progress: int = 0
    message: str = "Waiting for a worker"
    request_id: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    from_block: int | None = None
    to_block: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    attempts: int = 0  # how many times a worker claimed it (more than 1: resumed)
    version: int = 0  # bumped by every change; the watch stream's sequence
    principal: str | None = (
        None  # the API token that started it, when jobs are scoped per token (server/service/auth.py)
    )

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResultSummary:
    from_block: int
    to_block: int
    to_block_hash: str
    chain_id: int
    events_count: int
    processing_time_ms: int
    record_counts: dict[str, int]
    after_job_id: str | None = None  # the cursor an incremental sync continued from
    window_from: int | None = None  # the job keeps block hashes and touches from here to to_block
    reorg: dict[str, int] | None = None  # {fork_block, dropped_blocks} of a branch switch it handled
    dropped: dict[str, list[str]] = field(default_factory=dict)  # kind -> ids earlier results listed, gone now


@dataclass
class JobPage:
    jobs: list[JobRecord]
    next_position: JobPosition | None  # give it as ``after`` for the next page; None: this was the last
    total: int
