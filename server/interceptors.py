"""gRPC server interceptors: bearer-token auth, and ChainsyncError as a rich status.

Servicer methods simply raise ``ChainsyncError``; ``ErrorInterceptor`` aborts
the call with its canonical code, message and a ``grpc-status-details-bin``
trailer holding the google.rpc.Status (reason, domain, metadata).
``AuthInterceptor`` refuses every call without ``authorization: Bearer <token>``
metadata, except the health and reflection services.
"""

from __future__ import annotations

import logging

import grpc

from server.auth import Tokens
from server.errors import ChainsyncError

log = logging.getLogger("chainsync.grpc")


async def _abort(context: grpc.aio.ServicerContext, exc: ChainsyncError) -> None:
    await context.abort(
        exc.code, exc.message, trailing_metadata=(("grpc-status-details-bin", exc.to_status_details()),)
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


OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


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
                grpc.StatusCode.UNAUTHENTICATED,
                reason,
                "this server needs `authorization: Bearer <token>` (CHAINSYNC_API_TOKEN)",
            ),
        )
