"""Python clients of chainsync: ``GrpcClient`` (gRPC) and ``RestClient`` (the REST bridge), with one API.

    from chainsync_client import GrpcClient

    with GrpcClient("127.0.0.1:50051") as client:
        job = client.start_sync(blocks_back=1000)
        for event in client.watch(job.id):
            print(event.job.progress, event.job.message)
        result = client.result(job.id)

docs/python-client.md has the whole API.
"""

from chainsync_client._base import Client
from chainsync_client.errors import (
    ChainsyncError,
    InvalidArgument,
    JobCancelled,
    JobFailed,
    JobNotCompleted,
    JobNotFound,
    ServiceUnavailable,
    Unauthenticated,
    WaitTimeout,
)
from chainsync_client.grpc_client import GrpcClient
from chainsync_client.models import Job, JobEvent, JobPage, JobStats, SyncResult
from chainsync_client.rest_client import RestClient

__all__ = [
    "ChainsyncError",
    "Client",
    "GrpcClient",
    "InvalidArgument",
    "Job",
    "JobCancelled",
    "JobEvent",
    "JobFailed",
    "JobNotCompleted",
    "JobNotFound",
    "JobPage",
    "JobStats",
    "RestClient",
    "ServiceUnavailable",
    "SyncResult",
    "Unauthenticated",
    "WaitTimeout",
]
