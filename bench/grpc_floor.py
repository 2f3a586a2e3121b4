"""A JobService whose GetJob does nothing but answer one fixed Job: grpc.aio's own ceiling for a unary call.

``make loadtest`` runs the same h2load command against it and against the
real server, so the GetJob figure can be read as a fraction of what Python's
grpc.aio serves on this machine at that moment (docs/load.md). Serves until
terminated:

    .venv/bin/python bench/grpc_floor.py 127.0.0.1:50999
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

# About the size of a finished job's message, so the bytes on the wire are alike.
JOB = jobs_pb2.Job(
    id="00000000-0000-4000-8000-000000000000",
    type=jobs_pb2.JOB_TYPE_BLOCKCHAIN_SYNC,
    state=jobs_pb2.JOB_STATE_COMPLETED,
    progress=100,
    message="Synced 360 records from blocks 1..2368",
    from_block=1,
    to_block=2368,
)


class NoOpJobService(jobs_pb2_grpc.JobServiceServicer):
    async def GetJob(self, request, context):
        return JOB


async def serve(addr: str) -> None:
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(NoOpJobService(), server)
    server.add_insecure_port(addr)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
