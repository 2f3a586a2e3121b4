"""How the routes reach the gRPC JobService: the one channel, its stub per request, the metadata of each call.

One grpc.aio channel serves every request, so one bridge process handles many
pollers without a thread per request; nothing on the event loop blocks. The
app's lifespan opens the channel and puts the stub (and the status route's
StatusMirror, which lives as long as the channel) in the lifespan state,
which the server copies into every request's scope: ``stub_of`` is a dict
lookup. The status route is the product's hottest path (every client polls it
every 2 s), so neither ``stub_of`` nor ``metadata_of`` is a FastAPI dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc
from chainsync.v1 import jobs_pb2_grpc
from fastapi import FastAPI, Request

from rest_bridge.errors import BadRequest
from rest_bridge.status_mirror import StatusMirror
from server import logs

UNARY_TIMEOUT_S = 30.0  # DeleteJob may wait 5 s for a cancel; nothing else takes long
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),  # the server sends a whole result in one message
    ("grpc.keepalive_time_ms", 30_000),  # long WatchJob streams stay alive through proxies
    ("grpc.keepalive_timeout_ms", 10_000),
]


def channel_lifespan(
    grpc_target: str, tls_ca: bytes | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """The app's lifespan: a channel to grpc_target (over TLS, trusting tls_ca, when given) while the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca)
            channel = grpc.aio.secure_channel(grpc_target, credentials, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(grpc_target, options=CHANNEL_OPTIONS)
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        mirror = StatusMirror(stub)
        yield {"stub": stub, "status_mirror": mirror}
        await mirror.close()
        await channel.close()

    return lifespan


def stub_of(request: Request) -> jobs_pb2_grpc.JobServiceStub:
    """The JobService stub of the request's app."""
    return request.scope["state"]["stub"]


def status_mirror_of(request: Request) -> StatusMirror:
    """The status answers the request's app holds (rest_bridge/status_mirror.py)."""
    return request.scope["state"]["status_mirror"]


def metadata_of(request: Request) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata of a call: the client's Authorization header, passed through as it came, and
    the request id (``x-request-id``) that the RequestIds middleware put in the log context."""
    auth = request.headers.get("authorization")
    if auth and not (auth.isascii() and auth.isprintable()):  # what gRPC metadata can carry: printable ASCII
        raise BadRequest("Authorization", "Authorization: a bearer token is printable ASCII text", "INVALID_TOKEN")
    request_id = logs.request_id_var.get()
    if auth:
        return (("authorization", auth), ("x-request-id", request_id)) if request_id else (("authorization", auth),)
    return (("x-request-id", request_id),) if request_id else ()
