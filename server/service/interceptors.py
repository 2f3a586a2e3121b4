"""gRPC server interceptors: bearer-token auth, and ChainsyncError as a rich status.

Servicer methods simply raise ``ChainsyncError``; ``ErrorInterceptor`` aborts
the call with its canonical code, message and a ``grpc-status-details-bin``
trailer holding the google.rpc.Status (reason, domain, metadata).
``AuthInterceptor`` refuses every call without ``authorization: Bearer <token>``
metadata, except the health and reflection services. ``RequestIdInterceptor``
puts the call's ``x-request-id`` in the log context (server/logs.py).
"""

from __future__ import annotations

import asyncio
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


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                try:
                    return await inner(request, context)
                except ChainsyncError as exc:
                    await _abort(context, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request, context):
                try:
                    async for item in inner_stream(request, context):
                        yield item
                except ChainsyncError as exc:
                    await _abort(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


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


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every call by service, method and status code; times unary calls.

    The first interceptor, so that refusals of the others (UNAUTHENTICATED) and
    ChainsyncError statuses are counted too. A server stream (WatchJob) is
    counted when it ends and is in ``chainsync_grpc_streams_open`` while open;
    its length is not a latency and stays out of the histogram. Only methods the
    server has are counted, so the labels are bounded whatever clients send.
    """

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not (handler.unary_unary or handler.unary_stream):
            return handler  # unknown method, or a bidirectional stream (reflection): not counted
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        metrics = self._metrics
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                started, failed = time.perf_counter(), None
                try:
                    return await inner(request, context)
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    metrics.grpc_call(service, method, _code_name(context, failed), time.perf_counter() - started)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        inner_stream = handler.unary_stream

        async def unary_stream(request, context):
            failed = None
            metrics.stream_open(service, method, 1)
            try:
                async for item in inner_stream(request, context):
                    yield item
            except BaseException as exc:
                failed = exc
                raise
            finally:
                metrics.stream_open(service, method, -1)
                metrics.grpc_call(service, method, _code_name(context, failed), None)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )


OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
REQUEST_ID_METADATA = "x-request-id"


class RequestIdInterceptor(grpc.aio.ServerInterceptor):
    """Puts the call's ``x-request-id`` metadata (or a fresh UUIDv4) in the log context of the call.

    grpc.aio serves each call in a task of its own and finds its handler in that
    task, so the contextvar set here is seen by the handler (and by the threads
    it starts with asyncio.to_thread) and by nothing else. A value that is not 1
    to 128 printable ASCII characters is INVALID_ARGUMENT naming x-request-id.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        given = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == REQUEST_ID_METADATA:
                given = value
                break
        if given is None or given == "":
            logs.request_id_var.set(logs.new_request_id())
            return handler
        if isinstance(given, str) and logs.valid_request_id(given):
            logs.request_id_var.set(given)
            return handler
        logs.request_id_var.set(logs.new_request_id())
        if handler is None:
            return None
        return _refuse(
            handler,
            invalid_argument(REQUEST_ID_METADATA, f"must be 1 to {logs.MAX_REQUEST_ID} printable ASCII characters"),
        )


def _refuse(handler: grpc.RpcMethodHandler, error: ChainsyncError) -> grpc.RpcMethodHandler:
    async def unary(request, context):
        await _abort(context, error)

    async def stream(request, context):
        await _abort(context, error)
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if self._tokens.principal(given) is not None:
            return handler
        reason = "MISSING_TOKEN" if not given else "INVALID_TOKEN"
        return _refuse(
            handler,
            ChainsyncError(
                reason,
                "this server needs `authorization: Bearer <token>` (CHAINSYNC_API_TOKEN)",
            ),
        )
