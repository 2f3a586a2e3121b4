"""gRPC server interceptors: turn ChainsyncError into a status with ErrorInfo.

Servicer methods simply raise ``ChainsyncError``; this interceptor aborts the
call with its canonical code, message and a ``grpc-status-details-bin``
trailer holding the google.rpc.Status (reason, domain, metadata).
"""

from __future__ import annotations

import logging

import grpc

from server.errors import ChainsyncError

log = logging.getLogger("chainsync.grpc")


async def _abort(context: grpc.aio.ServicerContext, exc: ChainsyncError) -> None:
    await context.abort(exc.code, exc.message, trailing_metadata=(("grpc-status-details-bin", exc.to_status_details()),))


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
