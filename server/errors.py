"""Domain errors, and the one catalogue of what each reason means to a client.

Every layer raises ``ChainsyncError(reason, message, details)``: ``reason`` is
the UPPER_SNAKE_CASE code clients branch on, ``message`` says what failed and
what to do about it, ``details`` name the field, the job, the state. A failed
job carries the same reason as its ``errorCode``.

Nothing here knows gRPC or HTTP. ``CATALOGUE`` maps each reason to a canonical
gRPC status code (by name) and an HTTP status; the gRPC call wrapper
(server/service/calls.py), the bridge (rest_bridge/errors.py) and the
table in docs/rest-api.md (checked by tests/test_errors.py) all read it.
Stopping a job (cancelled, timed out, lost) is not an error: see server/stopping.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR_DOMAIN = "chainsync.dev"

# google/rpc/code.proto's HTTP mapping, as design.md has it.
HTTP_OF_CODE: dict[str, int] = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
}


@dataclass(frozen=True)
class Reason:
    grpc_code: str  # canonical gRPC status code name
    meaning: str  # one line for the docs' table: when it happens, what to do
    http_status: int = 0  # 0: the code's usual HTTP status (HTTP_OF_CODE)
    job_only: bool = False  # only ever a failed job's errorCode, never a call's error

    @property
    def http(self) -> int:
        return self.http_status or HTTP_OF_CODE.get(self.grpc_code, 500)


CATALOGUE: dict[str, Reason] = {
    # Bad input: refused before anything runs.
    "INVALID_ARGUMENT": Reason("INVALID_ARGUMENT", "A field is malformed or out of bounds; `details.field` names it."),
    "INVALID_BLOCKS_BACK": Reason("INVALID_ARGUMENT", "`blocksBack` is outside 1..100,000,000."),
    "INVALID_RANGE": Reason("INVALID_ARGUMENT", "`fromBlock`/`toBlock` are reversed or past the confirmed head."),
    "INVALID_JOB_ID": Reason("INVALID_ARGUMENT", "The job id is not a UUIDv4."),
    "INVALID_HEADER": Reason("INVALID_ARGUMENT", "A header value cannot be sent on as gRPC metadata; `details.field`."),
    "BODY_TOO_LARGE": Reason("RESOURCE_EXHAUSTED", "The request body is over 64 KiB.", http_status=413),
    "MISSING_TOKEN": Reason("UNAUTHENTICATED", "The server needs `Authorization: Bearer <token>`."),
    "INVALID_TOKEN": Reason("UNAUTHENTICATED", "The bearer token is not one the server knows."),
    # Jobs and their results.
    "JOB_NOT_FOUND": Reason("NOT_FOUND", "No job with this id (or not one this token may see)."),
    "JOB_NOT_COMPLETED": Reason(
        "FAILED_PRECONDITION", "The job is still pending or running; ask again later.", http_status=409
    ),
    "JOB_FAILED": Reason(
        "FAILED_PRECONDITION", "The job failed and has no result; `details` carry its errorCode.", http_status=409
    ),
    "JOB_CANCELLED": Reason("FAILED_PRECONDITION", "The job was cancelled and has no result.", http_status=409),
    "JOB_STILL_RUNNING": Reason("ABORTED", "Delete asked a running job to cancel; it has not stopped yet. Retry."),
    "CURSOR_NOT_FOUND": Reason("NOT_FOUND", "`after` names no job this token may see (or it was removed)."),
    "CURSOR_NOT_COMPLETED": Reason(
        "FAILED_PRECONDITION", "`after` names a job that has not completed; `details.state` says what it is.", 409
    ),
    "REORG_TOO_DEEP": Reason(
        "FAILED_PRECONDITION", "The chain changed below the reorg window: run a full sync.", job_only=True
    ),
    # Why a job failed (its errorCode).
    "JOB_TIMEOUT": Reason("DEADLINE_EXCEEDED", "The job ran past its timeout.", job_only=True),
    "RPC_UNAVAILABLE": Reason("UNAVAILABLE", "The EVM node did not answer within the retry budget.", job_only=True),
    "RPC_BAD_RESPONSE": Reason("UNAVAILABLE", "The node kept sending malformed answers.", job_only=True),
    "RPC_ERROR": Reason(
        "UNAVAILABLE", "The node answered a JSON-RPC error the sync cannot work around.", job_only=True
    ),
    "BLOCK_NOT_FOUND": Reason("UNAVAILABLE", "The node has no block the range needs.", job_only=True),
    "RESULT_TOO_LARGE": Reason("RESOURCE_EXHAUSTED", "The provider refuses even one block of logs.", job_only=True),
    "TRACE_UNSUPPORTED": Reason(
        "FAILED_PRECONDITION", "CHAINSYNC_SILENT_CHANGES=trace on a node without trace_filter.", job_only=True
    ),
    "NOT_ENOUGH_CONFIRMATIONS": Reason(
        "FAILED_PRECONDITION", "The chain is shorter than the confirmations asked for.", job_only=True
    ),
    "CHAIN_MISMATCH": Reason("FAILED_PRECONDITION", "The node is not on the deployment file's chain.", job_only=True),
    "CHAIN_UNSTABLE": Reason("ABORTED", "The chain kept reorganising under the range.", job_only=True),
    "DEPLOYMENT_NOT_FOUND": Reason("FAILED_PRECONDITION", "No deployment file at CHAINSYNC_DEPLOYMENT.", job_only=True),
    "DEPLOYMENT_INCOMPLETE": Reason("FAILED_PRECONDITION", "The deployment file lacks a contract.", job_only=True),
    "EMPTY_GETTER_RESPONSE": Reason("INTERNAL", "A getter returned no data: wrong chain or address?", job_only=True),
    "INTERNAL": Reason("INTERNAL", "A bug in chainsync; the message names it."),
    # The bridge's own.
    "GRPC_UNAVAILABLE": Reason("UNAVAILABLE", "The bridge cannot reach the gRPC server."),
    "GRPC_TIMEOUT": Reason("DEADLINE_EXCEEDED", "The gRPC server did not answer in time."),
    "NOT_FOUND": Reason("NOT_FOUND", "No such route."),
    "METHOD_NOT_ALLOWED": Reason("UNIMPLEMENTED", "The route does not take this method.", http_status=405),
}


@dataclass
class ChainsyncError(Exception):
    reason: str
    message: str
    details: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reason not in CATALOGUE:
            raise ValueError(f"{self.reason} is not in server.errors.CATALOGUE")

    def __str__(self) -> str:
        return self.message

    @property
    def grpc_code(self) -> str:
        return CATALOGUE[self.reason].grpc_code

    @property
    def http_status(self) -> int:
        return CATALOGUE[self.reason].http


def http_status(reason: str | None, grpc_code: str) -> int:
    """The HTTP status of a failed call: its reason's, else its gRPC code's (500 for the unknown)."""
    known = CATALOGUE.get(reason or "")
    return known.http if known is not None else HTTP_OF_CODE.get(grpc_code, 500)


def invalid_argument(field_name: str, message: str, reason: str = "INVALID_ARGUMENT") -> ChainsyncError:
    return ChainsyncError(reason, f"{field_name}: {message}", {"field": field_name})


def job_not_found(job_id: str) -> ChainsyncError:
    return ChainsyncError("JOB_NOT_FOUND", f"no job with id {job_id}", {"jobId": job_id})


def markdown_table() -> str:
    """The reasons as docs/rest-api.md shows them (a test keeps the two equal)."""
    rows = ["| code | HTTP | gRPC | when |", "| --- | ---: | --- | --- |"]
    for reason, info in CATALOGUE.items():
        where = " (a failed job's `errorCode`)" if info.job_only else ""
        rows.append(f"| `{reason}` | {info.http} | `{info.grpc_code}` | {info.meaning}{where} |")
    return "\n".join(rows)


def as_details(values: dict[str, Any]) -> dict[str, str]:
    """ErrorInfo metadata is string to string."""
    return {k: str(v) for k, v in values.items()}


if __name__ == "__main__":
    print(markdown_table())
