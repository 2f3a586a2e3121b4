"""What the clients return: the same dataclasses from gRPC and from REST.

Block numbers and counts are ints, uint256 values and entity ids decimal
strings, times UTC datetimes to the millisecond (what the REST API carries).
Records (proposals, petitions, reports) are plain dicts with the JSON names of
the REST API (``titleCid``, ``yesVotes``, ``created``, ...), ``created.blockNumber``
an int; both clients give exactly the same dicts. The REST parsers also take
the strings an older bridge sent for numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")
RECORD_KINDS = ("proposals", "petitions", "reports")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def json_time(value: datetime | None) -> str | None:
    """RFC 3339, UTC, with milliseconds: 2026-11-30T12:53:26.847Z."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def record_from_json(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the REST API sends it, ``created.blockNumber`` an int (an older bridge sent a string)."""
    created = record.get("created")
    if created and isinstance(created.get("blockNumber"), str):
        record["created"] = {**created, "blockNumber": int(created["blockNumber"])}
    return record


@dataclass(frozen=True)
class JobStats:
    """Live figures of a job, from work really done: every field of jobs.proto's JobStats (same names)."""

    blocks_total: int = 0
    blocks_done: int = 0
    events_found: int = 0
    records_total: int = 0
    records_done: int = 0
    blocks_per_second: float = 0.0
    eta_seconds: float = 0.0  # 0 when unknown
    range_splits: int = 0  # eth_getLogs ranges split because the provider refused them
    reorgs: int = 0  # times the chain changed under the range and part of it was synced again
    content_cids: int = 0  # IPFS content (docs/ipfs.md): distinct CIDs in the records,
    content_cached: int = 0  # served from the cache,
    content_fetched: int = 0  # fetched by this job,
    content_failed: int = 0  # that no gateway gave;
    content_unresolved: int = 0  # record fields left unresolved

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobStats:
        """From the REST stats object (every field a number); a field it lacks (an older bridge) is 0."""
        return cls(**{f.name: (float if f.type == "float" else int)(data.get(_camel(f.name), 0)) for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        """The REST stats object: every field, under its JSON name, as a number."""
        return {_camel(f.name): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Job:
    id: str
    type: str  # blockchain_sync | proposals_sync | petitions_sync | reports_sync
    status: str  # pending | running | completed | failed | cancelled
    progress: int  # 0..100, never goes down
    message: str
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    from_block: int | None = None
    to_block: int | None = None
    stats: JobStats = field(default_factory=JobStats)
    error: str | None = None
    error_code: str | None = None

    @property
    def done(self) -> bool:
        """True once the job is completed, failed or cancelled (it never changes again)."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """From the REST API's job object."""
        return cls(
            id=data["id"],
            type=data["type"],
            status=data["status"],
            progress=int(data["progress"]),
            message=data.get("message", ""),
            created_at=_time(data["createdAt"]),  # type: ignore[arg-type]
            started_at=_time(data.get("startedAt")),
            ended_at=_time(data.get("endedAt")),
            from_block=_int_or_none(data.get("fromBlock")),
            to_block=_int_or_none(data.get("toBlock")),
            stats=JobStats.from_json(data.get("stats") or {}),
            error=data.get("error"),
            error_code=data.get("errorCode"),
        )

    def to_json(self) -> dict[str, Any]:
        """The REST API's job object (what ``from_json`` reads): numbers as numbers, times with milliseconds."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "createdAt": json_time(self.created_at),
            "startedAt": json_time(self.started_at),
            "endedAt": json_time(self.ended_at),
            "completedAt": json_time(self.ended_at) if self.status == "completed" else None,
            "fromBlock": self.from_block,
            "toBlock": self.to_block,
            "stats": self.stats.to_json(),
            "error": self.error,
            "errorCode": self.error_code,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class JobEvent:
    """One change of a job, from ``watch``: reconnect after ``sequence`` to miss nothing."""

    sequence: int
    job: Job


@dataclass(frozen=True)
class Cursor:
    """Where a view stands once it applied a result: pass it (or its job_id) as ``after`` to continue."""

    job_id: str
    to_block: int
    to_block_hash: str


@dataclass(frozen=True)
class Reorg:
    """A branch switch a result handled: blocks fork_block.. of the branch read before were replaced or lost."""

    fork_block: int
    dropped_blocks: int


@dataclass(frozen=True)
class SyncResult:
    job_id: str
    proposals: list[dict[str, Any]]
    petitions: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    from_block: int
    to_block: int
    to_block_hash: str
    chain_id: int
    events_count: int
    processing_time_ms: int
    completed_at: datetime | None
    totals: dict[str, int]  # records of each kind in the whole result (all pages)
    cursor: Cursor  # this result's own cursor
    after: str | None  # the job this result continued from; None when none (a full sync)
    reorg: Reorg | None  # the branch switch handled; None when the chain did not reorganise
    dropped: dict[str, list[str]]  # kind -> ids earlier results listed that do not exist at to_block
    next_page_token: str | None = None  # with page_size: pass back as page_token

    @classmethod
    def from_json(cls, job_id: str, body: dict[str, Any]) -> SyncResult:
        """From the REST result body (``{"result": {...}, "completedAt", "nextPageToken"}``)."""
        result = body["result"]
        to_block, to_block_hash = int(result["toBlock"]), result.get("toBlockHash", "")
        cursor = result.get("cursor") or {"jobId": job_id, "toBlock": to_block, "toBlockHash": to_block_hash}
        reorg = result.get("reorg")
        dropped = result.get("dropped") or {}
        return cls(
            job_id=job_id,
            **{kind: [record_from_json(r) for r in result[kind]] for kind in RECORD_KINDS},
            from_block=int(result["fromBlock"]),
            to_block=to_block,
            to_block_hash=to_block_hash,
            chain_id=int(result.get("chainId", 0)),
            events_count=int(result.get("eventsCount", 0)),
            processing_time_ms=int(result["processingTime"]),
            completed_at=_time(body.get("completedAt")),
            totals={k: int(v) for k, v in (result.get("totals") or {k: len(result[k]) for k in RECORD_KINDS}).items()},
            cursor=Cursor(cursor["jobId"], int(cursor["toBlock"]), cursor["toBlockHash"]),
            after=result.get("after") or None,
            reorg=Reorg(int(reorg["forkBlock"]), int(reorg["droppedBlocks"])) if reorg else None,
            dropped={kind: list(dropped.get(kind, [])) for kind in RECORD_KINDS},
            next_page_token=body.get("nextPageToken") or None,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``list_jobs``; pass ``next_page_token`` back as ``page_token`` for the next."""

    jobs: list[Job]
    total: int  # jobs matching the filters, all pages
    next_page_token: str | None = None
