"""What every gRPC call goes through: its request id, the bearer token, its metrics, errors as rich statuses.

``CallWrapper.servicer`` wraps each method of a servicer once, before it is
registered. (Not a grpc.aio interceptor: with any interceptor grpc.aio awaits
one more coroutine and builds the handler again on every call, which cost
GetJob, the status poll, a tenth of its rate; registered methods are found by
the C core.) Per call it

- puts the call's ``x-request-id`` metadata (or a fresh UUIDv4) in the log
  context (server/logs.py); a value that is not 1 to 128 printable ASCII
  characters is INVALID_ARGUMENT naming x-request-id;
- with CHAINSYNC_API_TOKEN, refuses a call without ``authorization: Bearer
  <token>`` (MISSING_TOKEN, INVALID_TOKEN), except the health and reflection
  services;
- turns a ``ChainsyncError`` into its canonical code (server/errors.py), its
  message and a ``grpc-status-details-bin`` trailer holding the
  google.rpc.Status (reason, domain, metadata);
- counts the call by service, method and status code, and times unary calls
  (a server stream, WatchJob, is counted when it ends and is in
  ``chainsync_grpc_streams_open`` while open). Only the server's own methods
  are counted, so the labels are bounded whatever clients send.

grpc.aio serves each call in a task of its own, so the request id set in the
wrapper is seen by the handler (and the threads it starts with
asyncio.to_thread) and by nothing else.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from server import logs
from server.errors import ERROR_DOMAIN, ChainsyncError, invalid_argument
from server.metrics import ServerMetrics
from server.service.auth import Tokens

log = logging.getLogger("chainsync.grpc")


def status_details(exc: ChainsyncError) -> bytes:
    """The serialized google.rpc.Status (with its ErrorInfo) for the grpc-status-details-bin trailer."""
    code = grpc.StatusCode[exc.grpc_code]
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.details)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code.value[0], message=exc.message, details=[detail]).SerializeToString()


async def _abort(context: grpc.aio.ServicerContext, exc: ChainsyncError) -> None:
    await context.abort(
        grpc.StatusCode[exc.grpc_code],
        exc.message,
        trailing_metadata=(("grpc-status-details-bin", status_details(exc)),),
    )


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
REQUEST_ID_METADATA = "x-request-id"


def _code_name(context: grpc.aio.ServicerContext, failed: BaseException | None) -> str:
    """The status the call ends with: what the handler set or aborted with, else OK, or UNKNOWN on an exception."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code in _CODE_NAMES:
        return _CODE_NAMES[code]
    if isinstance(failed, asyncio.CancelledError):
        return "CANCELLED"
    return "OK" if failed is None else "UNKNOWN"


class CallWrapper:
    def __init__(self, metrics: ServerMetrics, tokens: Tokens | None = None) -> None:
        self._metrics = metrics
        self._tokens = tokens

    def servicer(self, service: str, servicer: object, open_service: bool = False) -> object:
        """A servicer whose RPC methods (the CamelCase attributes) are wrapped; pass it to the generated
        ``add_*Servicer_to_server``. An open service (health) needs no token."""
        return _Wrapped(self, service, servicer, open_service)

    def _admit(self, context: grpc.aio.ServicerContext, open_method: bool) -> None:
        """Sets the call's request id; raises ChainsyncError for a bad one, or a missing or wrong token."""
        given_id, authorization = None, ""
        for key, value in context.invocation_metadata() or ():
            if key == REQUEST_ID_METADATA:
                given_id = value
            elif key == "authorization":
                authorization = value
        if given_id and isinstance(given_id, str) and logs.valid_request_id(given_id):
            logs.request_id_var.set(given_id)
        else:
            logs.request_id_var.set(logs.new_request_id())
            if given_id:
                limit = logs.MAX_REQUEST_ID
                raise invalid_argument(REQUEST_ID_METADATA, f"must be 1 to {limit} printable ASCII characters")
        if self._tokens is not None and not open_method and self._tokens.principal(authorization) is None:
            raise ChainsyncError(
                "INVALID_TOKEN" if authorization else "MISSING_TOKEN",
                "this server needs `authorization: Bearer <token>` (CHAINSYNC_API_TOKEN)",
            )

    def _unary(self, service: str, method: str, inner, open_method: bool):
        metrics = self._metrics

        async def unary(request, context):
            started, failed = time.perf_counter(), None
            try:
                try:
                    self._admit(context, open_method)
                    return await inner(request, context)
                except ChainsyncError as exc:
                    await _abort(context, exc)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                metrics.grpc_call(service, method, _code_name(context, failed), time.perf_counter() - started)

        return unary

    def _stream(self, service: str, method: str, inner, open_method: bool):
        metrics = self._metrics

        async def stream(request, context):
            failed = None
            metrics.stream_open(service, method, 1)
            try:
                try:
                    self._admit(context, open_method)
                    async for item in inner(request, context):
                        yield item
                except ChainsyncError as exc:
                    await _abort(context, exc)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                metrics.stream_open(service, method, -1)
                metrics.grpc_call(service, method, _code_name(context, failed), None)

        return stream


class _Wrapped:
    """The servicer as the generated registration code sees it: each RPC method wrapped, made once."""

    def __init__(self, calls: CallWrapper, service: str, servicer: object, open_service: bool) -> None:
        self._calls, self._service, self._servicer, self._open = calls, service, servicer, open_service

    def __getattr__(self, name: str):
        inner = getattr(self._servicer, name)
        if not (name[:1].isupper() and callable(inner)):
            return inner
        if inspect.isasyncgenfunction(inner):
            wrapped = self._calls._stream(self._service, name, inner, self._open)
        else:
            wrapped = self._calls._unary(self._service, name, inner, self._open)
        setattr(self, name, wrapped)
        return wrapped
