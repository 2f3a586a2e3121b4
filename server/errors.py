"""The one error type of the server, and how it becomes a gRPC status.

Every layer raises ``ChainsyncError(code, reason, message)``: ``code`` is the
canonical gRPC status code, ``reason`` the UPPER_SNAKE_CASE ErrorInfo reason
clients branch on, ``message`` what failed and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "chainsync.dev"


@dataclass
class ChainsyncError(Exception):
    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def to_status_details(self) -> bytes:
        """The serialized google.rpc.Status for the grpc-status-details-bin trailer."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        return status.SerializeToString()


def invalid_argument(field_name: str, message: str, reason: str = "INVALID_ARGUMENT") -> ChainsyncError:
    return ChainsyncError(grpc.StatusCode.INVALID_ARGUMENT, reason, f"{field_name}: {message}", {"field": field_name})


def job_not_found(job_id: str) -> ChainsyncError:
    return ChainsyncError(grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND", f"no job with id {job_id}", {"jobId": job_id})
