"""ASGI middleware of the bridge (plain ASGI, not BaseHTTPMiddleware: no task per request, streams untouched).

Owns ``BodySizeLimit``, which caps request bodies, and ``RequestIds``, which gives each request its id and
writes the access log.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rest_bridge.errors import bridge_error
from server import logs

access_log = logging.getLogger("chainsync.access")


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not they declare a Content-Length.

    A declared length over the cap is refused before reading; an undeclared
    (chunked) body is read up to the cap, then handed on unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        if b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = bridge_error(
            "BODY_TOO_LARGE", f"body: larger than {self.max_bytes} bytes", {"field": "body"}, {"Connection": "close"}
        )
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class RequestIds:
    """Gives every request an id and, with ``access_log``, writes one log line per request.

    The id is the client's ``X-Request-ID`` when it is 1 to 128 printable ASCII
    characters, or a fresh UUIDv4 when it sent none; any other value is a 400
    naming X-Request-ID (answered with a fresh id). The id goes back in the
    ``X-Request-ID`` response header of every answer, errors included, and into
    the log context (``server.logs.request_id_var``), where ``metadata_of``
    reads it to pass it on to the gRPC call. Each request runs in a task of its
    own, so the context is not reset here: the 500 handler, which runs outside
    this middleware, still reads it.
    """

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        malformed = bool(given) and not logs.valid_request_id(given)
        request_id = given if given and not malformed else logs.new_request_id()
        logs.request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500  # unless a response starts: an exception went to the 500 handler outside this middleware

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        started = time.perf_counter()
        try:
            if malformed:
                response = bridge_error(
                    "INVALID_ARGUMENT",
                    f"X-Request-ID: must be 1 to {logs.MAX_REQUEST_ID} printable ASCII characters",
                    {"field": "X-Request-ID"},
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                route = scope.get("route")
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "route": getattr(route, "path", None),
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
