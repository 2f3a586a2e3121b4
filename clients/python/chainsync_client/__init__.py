"""Python clients of chainsync: ``GrpcClient`` (gRPC) and ``RestClient`` (the REST bridge), with one API.

    from chainsync_client import GrpcClient

    with GrpcClient("127.0.0.1:50051") as client:
        job = client.start_sync(blocks_back=1000)
        for event in client.watch(job.id):
            print(event.job.progress, event.job.message)
        result = client.result(job.id)

An application that keeps its own copy of the records applies results to a
``SyncView`` (``view.sync(client)``: a full sync, then incrementals; docs/reorgs.md).
docs/python-client.md has the whole API.
"""

from chainsync_client._base import Client
from chainsync_client.errors import (
    ChainsyncError,
    CursorNotCompleted,
    CursorNotFound,
    InvalidArgument,
    JobCancelled,
    JobFailed,
    JobNotCompleted,
    JobNotFound,
    ReorgTooDeep,
    ServiceUnavailable,
    Unauthenticated,
    WaitTimeout,
)
from chainsync_client.grpc_client import GrpcClient
from chainsync_client.models import Cursor, Job, JobEvent, JobPage, JobStats, Reorg, SyncResult
from chainsync_client.rest_client import RestClient
from chainsync_client.view import SyncView

__all__ = [
    "ChainsyncError",
    "Client",
    "Cursor",
    "CursorNotCompleted",
    "CursorNotFound",
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
    "Reorg",
    "ReorgTooDeep",
    "RestClient",
    "ServiceUnavailable",
    "SyncResult",
    "SyncView",
    "Unauthenticated",
    "WaitTimeout",
]
