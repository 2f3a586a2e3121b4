"""What the clients return: the same dataclasses from gRPC and from REST.

Records (proposals, petitions, reports) are plain dicts with the JSON names of
the REST API (``titleCid``, ``yesVotes``, ``created``, ...), uint256 values as
decimal strings; both clients give exactly the same dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")
RECORD_KINDS = ("proposals", "petitions", "reports")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _json_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class JobStats:
    blocks_total: int = 0
    blocks_done: int = 0
    events_found: int = 0
    records_total: int = 0
    records_done: int = 0
    blocks_per_second: float = 0.0
    eta_seconds: float = 0.0  # 0 when unknown

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobStats:
        return cls(
            blocks_total=int(data.get("blocksTotal", 0)),
            blocks_done=int(data.get("blocksDone", 0)),
            events_found=int(data.get("eventsFound", 0)),
            records_total=int(data.get("recordsTotal", 0)),
            records_done=int(data.get("recordsDone", 0)),
            blocks_per_second=float(data.get("blocksPerSecond", 0.0)),
            eta_seconds=float(data.get("etaSeconds", 0.0)),
        )


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
            from_block=int(data["fromBlock"]) if data.get("fromBlock") else None,
            to_block=int(data["toBlock"]) if data.get("toBlock") else None,
            stats=JobStats.from_json(data.get("stats", {})),
            error=data.get("error"),
            error_code=data.get("errorCode"),
        )

    def to_json(self) -> dict[str, Any]:
        """The REST API's job object (what ``from_json`` reads)."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "createdAt": _json_time(self.created_at),
            "startedAt": _json_time(self.started_at),
            "endedAt": _json_time(self.ended_at),
            "fromBlock": None if self.from_block is None else str(self.from_block),
            "toBlock": None if self.to_block is None else str(self.to_block),
            "stats": {
                "blocksTotal": str(self.stats.blocks_total),
                "blocksDone": str(self.stats.blocks_done),
                "eventsFound": str(self.stats.events_found),
                "recordsTotal": str(self.stats.records_total),
                "recordsDone": str(self.stats.records_done),
                "blocksPerSecond": self.stats.blocks_per_second,
                "etaSeconds": self.stats.eta_seconds,
            },
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
    next_page_token: str | None = None  # with page_size: pass back as page_token

    @classmethod
    def from_json(cls, job_id: str, body: dict[str, Any]) -> SyncResult:
        """From the REST result body (``{"result": {...}, "completedAt", "nextPageToken"}``)."""
        result = body["result"]
        return cls(
            job_id=job_id,
            proposals=result["proposals"],
            petitions=result["petitions"],
            reports=result["reports"],
            from_block=int(result["fromBlock"]),
            to_block=int(result["toBlock"]),
            to_block_hash=result.get("toBlockHash", ""),
            chain_id=int(result.get("chainId", 0)),
            events_count=int(result.get("eventsCount", 0)),
            processing_time_ms=int(result["processingTime"]),
            completed_at=_time(body.get("completedAt")),
            totals=dict(result.get("totals") or {k: len(result[k]) for k in RECORD_KINDS}),
            next_page_token=body.get("nextPageToken") or None,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``list_jobs``; pass ``next_page_token`` back as ``page_token`` for the next."""

    jobs: list[Job]
    total: int  # jobs matching the filters, all pages
    next_page_token: str | None = None
