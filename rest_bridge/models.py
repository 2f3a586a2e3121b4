"""Request and response shapes of the JSON API, mirroring chainsync.v1 (jobs.proto).

Requests are strict: a float, a string or a boolean where an integer belongs is
a 400 that names the field, as is an unknown field (most often a typo).

Responses are documented with these models in the OpenAPI document, but built
as plain dicts (rest_bridge/convert.py) for speed; tests validate real
responses against the document, so the two cannot drift apart. Job states and
types come from server/states.py. The record models, one per kind of
server/kinds.py and named after its protobuf message, are made from the
protobuf descriptors, so a field added to the proto appears here by itself;
the result's lists and totals follow the kinds too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from chainsync.v1 import jobs_pb2
from fastapi import Path
from google.protobuf.descriptor import FieldDescriptor
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from server.engine.ranges import MAX_BLOCK, MAX_BLOCKS_BACK, MAX_CONFIRMATIONS
from server.kinds import ALL_KINDS_JOB, KINDS
from server.service.requests import MAX_TIMEOUT_S, REQUEST_ID_PATTERN, UUID_RE
from server.states import JOB_TYPE_NAMES, STATES

# A block number in a request: a JSON number, or (as clients of the first API sent it) a decimal string.
BlockNumber = Annotated[int, Field(ge=0, le=MAX_BLOCK)] | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,19}$")]
RequestId = Annotated[str, StringConstraints(pattern=f"^{REQUEST_ID_PATTERN}$")]
JobIdText = Annotated[str, StringConstraints(pattern=f"^{UUID_RE.pattern}$")]
JobTypeName = Literal[JOB_TYPE_NAMES]  # type: ignore[valid-type]
JobStatusName = Literal[STATES]  # type: ignore[valid-type]
Block = Annotated[int, Field(ge=0, description="A block number.")]
Count = Annotated[int, Field(ge=0)]
Timestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        description="RFC 3339 time, UTC, with milliseconds: 2026-11-30T12:53:26.847Z.",
        json_schema_extra={"format": "date-time"},
    ),
]
JobId = Annotated[str, Path(alias="jobId", description="The job id (a UUIDv4) that start returned.")]


def is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit() also accepts '²' and other digits int() refuses)."""
    return text.isascii() and text.isdigit()


class StartSyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    blocksBack: Annotated[int, Field(ge=1, le=MAX_BLOCKS_BACK)] | None = Field(
        None, description="Sync the last N blocks up to head - confirmations (default 1000)."
    )
    isFullSync: bool = Field(False, description="Sync from the earliest deployment block.")
    type: JobTypeName = ALL_KINDS_JOB
    requestId: RequestId | None = Field(
        None, description="Idempotency key: the same key within 24 h returns the first job (or send `Idempotency-Key`)."
    )
    fromBlock: BlockNumber | None = Field(None, description="Explicit range start (inclusive), instead of blocksBack.")
    toBlock: BlockNumber | None = Field(None, description="Explicit range end (inclusive).")
    incremental: bool = Field(
        False,
        description="Continue from a cursor: the last completed sync of this type you can see, or `after` "
        "(docs/reorgs.md).",
    )
    after: JobIdText | None = Field(
        None,
        description="The cursor: the job whose result you applied last (a completed sync of this type). "
        "Implies `incremental`.",
    )
    confirmations: Annotated[int, Field(ge=0, le=MAX_CONFIRMATIONS)] | None = None
    timeoutSeconds: Annotated[int, Field(ge=1, le=MAX_TIMEOUT_S)] | None = None


# --- responses ---------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_NUMBERS: dict[int, Any] = {FieldDescriptor.TYPE_UINT64: Count, FieldDescriptor.TYPE_DOUBLE: float}

# Every field of the protobuf JobStats, under its JSON name, as a number (rest_bridge/convert.py fills them).
JobStats = create_model(
    "JobStats",
    __base__=Strict,
    __doc__="Live figures of a job, from work really done: every field of jobs.proto's JobStats.",
    **{f.json_name: (_NUMBERS[f.type], ...) for f in jobs_pb2.JobStats.DESCRIPTOR.fields},
)


class Job(Strict):
    id: str = Field(description="The job id (a UUIDv4).")
    type: JobTypeName
    status: JobStatusName
    progress: int = Field(ge=0, le=100, description="0..100, never goes down; 100 only when completed.")
    message: str
    createdAt: Timestamp
    startedAt: Timestamp | None = Field(None, description="Present once the job has started.")
    endedAt: Timestamp | None = Field(None, description="Present once the job is completed, failed or cancelled.")
    completedAt: Timestamp | None = Field(None, description="Present when the job is completed.")
    fromBlock: Block | None = Field(None, description="The resolved range, once the job has started.")
    toBlock: Block | None = None
    stats: JobStats  # type: ignore[valid-type]
    error: str | None = Field(None, description="What failed and what to do (failed or cancelled jobs).")
    errorCode: str | None = Field(None, description="UPPER_SNAKE_CASE reason: RPC_UNAVAILABLE, JOB_TIMEOUT, ...")


class StartResponse(Strict):
    success: Literal[True]
    jobId: str
    message: str
    statusUrl: str
    resultUrl: str
    job: Job


class StatusResponse(Strict):
    success: Literal[True]
    job: Job


class Pagination(Strict):
    page: int = Field(ge=1)
    limit: int = Field(ge=1, le=100)
    total: int = Field(ge=0, description="Jobs matching the filters.")
    totalPages: int = Field(ge=0)


class ListJobsResponse(Strict):
    success: Literal[True]
    jobs: list[Job]
    pagination: Pagination
    nextPageToken: str | None = Field(None, description="Pass as `pageToken` for the next page; absent on the last.")


class DeleteResponse(Strict):
    success: Literal[True]
    jobId: str
    message: str


class Provenance(Strict):
    """The event that created the record, when it is inside the synced range."""

    blockNumber: Block
    transactionHash: str
    logIndex: int


_SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: str,
    FieldDescriptor.TYPE_BOOL: bool,
    FieldDescriptor.TYPE_UINT32: int,
    FieldDescriptor.TYPE_INT32: int,
    FieldDescriptor.TYPE_UINT64: Block,
}


class UnresolvedContent(Strict):
    """A *Cid field whose IPFS content is not in the record (docs/ipfs.md)."""

    field: str = Field(description="The record's field: titleCid, shortDescriptionCid, desCid, ...")
    cid: str = Field(description="The field's value as on chain.")
    reason: Literal["not_a_cid", "hash_mismatch", "too_large", "not_text", "not_found", "unavailable"]


def _record_model(message: Any) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for f in message.DESCRIPTOR.fields:
        if f.message_type is not None and f.message_type.name == "UnresolvedContent":
            fields[f.json_name] = (
                list[UnresolvedContent],
                Field(None, description="IPFS content not resolved; absent when none (or resolution is off)"),
            )
        elif f.has_presence and f.message_type is None:
            fields[f.json_name] = (
                _SCALARS[f.type],
                Field(None, description="IPFS content behind the CID field; absent when not resolved"),
            )
        elif f.message_type is not None:
            fields[f.json_name] = (
                Provenance | None,
                Field(..., description="null when the creating event is outside the range"),
            )
        else:
            fields[f.json_name] = (_SCALARS[f.type], ...)
    return create_model(message.DESCRIPTOR.name, __base__=Strict, __doc__=message.DESCRIPTOR.name, **fields)


# One model per record kind, by the kind's name: the schema is named after the protobuf message.
RECORD_MODELS: dict[str, type[BaseModel]] = {
    kind.name: _record_model(getattr(jobs_pb2, kind.message)) for kind in KINDS
}

RecordTotals = create_model("RecordTotals", __base__=Strict, **{kind.name: (int, ...) for kind in KINDS})

DroppedIds = create_model(
    "DroppedIds",
    __base__=Strict,
    __doc__="Per kind, the ids earlier results listed that do not exist at toBlock: delete them from your view.",
    **{kind.name: (list[str], ...) for kind in KINDS},
)


class Cursor(Strict):
    """Where a view stands once it applied this result: give jobId as `after` to continue from it."""

    jobId: str
    toBlock: Block
    toBlockHash: str


class Reorg(Strict):
    """A branch switch this result handled: blocks forkBlock.. of the branch read before were replaced or lost."""

    forkBlock: Block
    droppedBlocks: Count


SyncResult = create_model(
    "SyncResult",
    __base__=Strict,
    **{name: (list[model], ...) for name, model in RECORD_MODELS.items()},  # type: ignore[valid-type]
    fromBlock=(Block, ...),
    toBlock=(Block, ...),
    toBlockHash=(str, Field(description="Hash of toBlock: the chain the records were read from.")),
    chainId=(int, ...),
    eventsCount=(Count, ...),
    processingTime=(Count, Field(description="Wall time of the job in milliseconds.")),
    totals=(RecordTotals, Field(description="Records of each kind in the whole result (all pages).")),
    cursor=(Cursor, Field(description="This result's own cursor.")),
    after=(str | None, Field(description="The cursor this result continued from; null when none (docs/reorgs.md).")),
    reorg=(Reorg | None, Field(description="The branch switch handled; null when the chain did not reorganise.")),
    dropped=(DroppedIds, ...),
)


class ResultResponse(Strict):
    success: Literal[True]
    result: SyncResult  # type: ignore[valid-type]
    completedAt: Timestamp
    nextPageToken: str | None = Field(None, description="With pageSize: pass as `pageToken` for the next page.")


class ErrorBody(Strict):
    success: Literal[False]
    error: str = Field(description="What went wrong and what to do about it.")
    code: str = Field(description="UPPER_SNAKE_CASE reason (the gRPC ErrorInfo reason): JOB_NOT_FOUND, ...")
    details: dict[str, Any] = Field(description="The ErrorInfo metadata, e.g. `field`, `jobId`, `state`.")


class Health(Strict):
    success: Literal[True]
