"""The bridge's Prometheus metrics and the plain ASGI middleware that records its HTTP requests.

Owns: ``BridgeMetrics``, one app's metrics in its own ``CollectorRegistry``
(each ``create_app`` gets its own, so several apps in one process do not
collide), and ``HttpMetrics``, the middleware. Requests are labelled by the
route template (``/api/blockchain/sync/status/{jobId}``), never the raw path,
so job ids do not multiply the series. The polling path pays two clock reads,
a dict lookup and three lock-guarded increments. docs/metrics.md lists every
metric.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A bridge answer: most are one gRPC call on loopback (a few milliseconds).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
METHODS = frozenset({"GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"})
UNMATCHED = "(unmatched)"  # the route label of a path no route serves (a 404 by the router)
disable_created_metrics()  # no `_created` series beside every counter and histogram: half the scrape, unused


@dataclass(eq=False)
class BridgeMetrics:
    registry: CollectorRegistry
    http_duration: Histogram
    in_flight: Gauge
    sse_open: Gauge
    grpc_errors: Counter
    status_answers: Counter
    _children: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls) -> BridgeMetrics:
        r = CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            http_duration=Histogram(
                "chainsync_bridge_http_request_duration_seconds",
                "Seconds from a request to its response's headers (for a stream: to its first byte), "
                "by method, route template and status.",
                ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=r,
            ),
            in_flight=Gauge(
                "chainsync_bridge_http_requests_in_flight", "HTTP requests being served now (open streams included).",
                registry=r,
            ),
            sse_open=Gauge(
                "chainsync_bridge_sse_streams_open", "Server-sent event streams (/api/blockchain/sync/events) open now.",
                registry=r,
            ),
            grpc_errors=Counter(
                "chainsync_bridge_grpc_errors",
                "gRPC calls to the JobService that failed and became an HTTP error, by gRPC status code.",
                ["code"], registry=r,
            ),
            status_answers=Counter(
                "chainsync_bridge_status_answers",
                "Status polls answered, by where the answer came from: `memory` (the bridge's status mirror) "
                "or `server` (a GetJob call).",
                ["source"], registry=r,
            ),
        )  # fmt: skip

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self.http_duration.labels(method, route, str(status)))
        child.observe(seconds)

    def grpc_error(self, code: str) -> None:
        self.grpc_errors.labels(code).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The scrape's body and content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route(scope: Scope) -> str:
    route = scope.get("route")  # set by the router on the request's scope once a route matched
    return getattr(route, "path", None) or UNMATCHED


class HttpMetrics:
    """Times every HTTP request to its response's start and counts requests in flight and open SSE streams."""

    def __init__(self, app: ASGIApp, metrics: BridgeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        started = time.perf_counter()
        status = 0
        stream = False

        async def send_and_record(message: Message) -> None:
            nonlocal status, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                metrics.observe(method, _route(scope), status, time.perf_counter() - started)
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        if value.startswith(b"text/event-stream"):
                            stream = True
                            metrics.sse_open.inc()
                        break
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        except BaseException:
            if not status:  # the error middleware outside answers 500
                metrics.observe(method, _route(scope), 500, time.perf_counter() - started)
            raise
        finally:
            metrics.in_flight.dec()
            if stream:
                metrics.sse_open.dec()
