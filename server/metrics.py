"""The server's Prometheus metrics: what they are, where they are kept, and serving them over HTTP.

Owns: ``ServerMetrics``, the metric objects of one server held in their own
``CollectorRegistry`` (not prometheus_client's global one, so several servers
or tests in one process do not collide), with small recording methods that
cache their labelled children (the RPC transport records every request to
the node); ``JobsCollector``, which reads jobs per state and the
worker pool at scrape time; and ``serve_metrics``, the HTTP listener of
CHAINSYNC_METRICS_ADDR. The code that does the work (JsonRpc, SyncEngine,
run_sync_job, the gRPC call wrapper) is handed a ``ServerMetrics``; by default it
gets ``NO_METRICS``, a set kept in a private registry that nobody scrapes.
docs/metrics.md lists every metric.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.logs import redact
from server.states import PENDING, STATES

log = logging.getLogger("chainsync.metrics")
disable_created_metrics()  # no `_created` series beside every counter and histogram: half the scrape, unused

# A sync job takes from well under a second (a few blocks) to hours (a full mainnet history).
JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, float("inf"))
# One HTTP request to the node: a local node answers in a millisecond, a public provider in tens to thousands.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
# A unary gRPC call: most are one store read or write.
GRPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))


@dataclass(eq=False)
class ServerMetrics:
    """Every metric of one server, registered in ``registry``."""

    registry: CollectorRegistry
    jobs_finished: Counter
    job_duration: Histogram
    blocks_scanned: Counter
    records_synced: Counter
    events_decoded: Counter
    rpc_requests: Counter
    rpc_duration: Histogram
    rpc_retries: Counter
    range_splits: Counter
    grpc_requests: Counter
    grpc_duration: Histogram
    grpc_streams_open: Gauge
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ServerMetrics:
        r = CollectorRegistry(auto_describe=True) if registry is None else registry
        grpc_labels = ["service", "method", "code"]
        return cls(
            registry=r,
            jobs_finished=Counter(
                "chainsync_jobs_finished", "Jobs this server ran that ended, by type and final state.",
                ["type", "state"], registry=r,
            ),
            job_duration=Histogram(
                "chainsync_job_duration_seconds", "Seconds from a job's first start to its end, by type and final state.",
                ["type", "state"], buckets=JOB_BUCKETS, registry=r,
            ),
            blocks_scanned=Counter(
                "chainsync_blocks_scanned", "Blocks whose logs were scanned and saved (a reorg rescan counts again).",
                registry=r,
            ),
            records_synced=Counter(
                "chainsync_records_synced", "Records read at a job's end block and saved, by kind.", ["kind"], registry=r,
            ),
            events_decoded=Counter(
                "chainsync_events_decoded", "Contract events decoded from eth_getLogs answers.", registry=r,
            ),
            rpc_requests=Counter(
                "chainsync_rpc_requests",
                "HTTP requests to the EVM node, by endpoint (scheme://host:port only), JSON-RPC method and outcome.",
                ["endpoint", "method", "outcome"], registry=r,
            ),
            rpc_duration=Histogram(
                "chainsync_rpc_request_duration_seconds",
                "Seconds one HTTP request to the node took, by JSON-RPC method (a batch counts once).",
                ["method"], buckets=RPC_BUCKETS, registry=r,
            ),
            rpc_retries=Counter(
                "chainsync_rpc_retries", "Requests to the node tried again after a transient failure.", ["endpoint"],
                registry=r,
            ),
            range_splits=Counter(
                "chainsync_range_splits", "Block ranges made smaller after the node refused them, by method.",
                ["method"], registry=r,
            ),
            grpc_requests=Counter(
                "chainsync_grpc_requests", "gRPC calls handled (streams included), by service, method and status code.",
                grpc_labels, registry=r,
            ),
            grpc_duration=Histogram(
                "chainsync_grpc_request_duration_seconds",
                "Seconds a unary gRPC call took, by service, method and status code (streams are not in it).",
                grpc_labels, buckets=GRPC_BUCKETS, registry=r,
            ),
            grpc_streams_open=Gauge(
                "chainsync_grpc_streams_open", "Server-streaming gRPC calls open now (WatchJob), by service and method.",
                ["service", "method"], registry=r,
            ),
        )  # fmt: skip

    def _child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), cached: a dict lookup instead of prometheus_client's locked one."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, metric.labels(*labels))
        return child

    # -- recording ------------------------------------------------------------

    def rpc_request(self, url: str, method: str, outcome: str, seconds: float) -> None:
        """One HTTP request to the node; url is redacted to scheme://host:port (keys live in path and query)."""
        self._child(self.rpc_requests, _endpoint(url), method, outcome).inc()
        self._child(self.rpc_duration, method).observe(seconds)

    def rpc_retry(self, url: str) -> None:
        self._child(self.rpc_retries, _endpoint(url)).inc()

    def range_split(self, method: str) -> None:
        self._child(self.range_splits, method).inc()

    def scanned(self, blocks: int, events: int) -> None:
        self.blocks_scanned.inc(blocks)
        self.events_decoded.inc(events)

    def records(self, kind: str, count: int) -> None:
        self._child(self.records_synced, kind).inc(count)

    def job_finished(self, job_type: str, state: str, seconds: float) -> None:
        self._child(self.jobs_finished, job_type, state).inc()
        self._child(self.job_duration, job_type, state).observe(max(0.0, seconds))

    def grpc_call(self, service: str, method: str, code: str, seconds: float | None) -> None:
        """A finished gRPC call; seconds is None for a stream (its length says nothing about latency)."""
        self._child(self.grpc_requests, service, method, code).inc()
        if seconds is not None:
            self._child(self.grpc_duration, service, method, code).observe(seconds)

    def stream_open(self, service: str, method: str, delta: int) -> None:
        self._child(self.grpc_streams_open, service, method).inc(delta)


_endpoints: dict[str, str] = {}


def _endpoint(url: str) -> str:
    label = _endpoints.get(url)
    if label is None:
        label = _endpoints[url] = redact(url)
    return label


NO_METRICS = ServerMetrics.create()  # the default of every recorder: kept in a registry nobody scrapes


class JobsCollector(Collector):
    """Jobs per state and the worker pool, read when Prometheus scrapes.

    ``count_jobs`` is the store's ``count_by_state``: with PostgreSQL it counts
    every replica's jobs (the store is shared), with SQLite this server's.
    ``workers`` gives (busy, size) of this server's pool.
    """

    def __init__(self, count_jobs: Callable[[], dict[str, int]], workers: Callable[[], tuple[int, int]]) -> None:
        self.count_jobs = count_jobs
        self.workers = workers

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # nothing to check at registration; collect() is not called then

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("chainsync_job_store_up", "1 when the job store answered this scrape's count, else 0.")
        try:
            counts = self.count_jobs()
        except Exception as exc:  # a store outage must not turn every scrape into an error
            log.warning("metrics: counting jobs failed: %s", exc)
            up.add_metric([], 0)
            counts = None
        else:
            up.add_metric([], 1)
        yield up
        if counts is not None:
            jobs = GaugeMetricFamily(
                "chainsync_jobs", "Jobs in the store by state (with PostgreSQL: all replicas' jobs).", labels=["state"]
            )
            for state in STATES:
                jobs.add_metric([state], counts.get(state, 0))
            yield jobs
            yield GaugeMetricFamily(
                "chainsync_queue_depth", "Jobs waiting for a worker (pending; with PostgreSQL: all replicas').",
                value=counts.get(PENDING, 0),
            )  # fmt: skip
        busy, size = self.workers()
        yield GaugeMetricFamily("chainsync_workers_busy", "Worker threads of this server running a job.", value=busy)
        yield GaugeMetricFamily("chainsync_workers", "Worker threads of this server (CHAINSYNC_WORKERS).", value=size)


class EndpointsCollector(Collector):
    """Each node endpoint's window now (server/transport/endpoints.py), read when Prometheus scrapes.

    ``states`` gives (url, window, in flight, requests per second allowed or None) per endpoint."""

    def __init__(self, states: Callable[[], list[tuple[str, float, int, float | None]]]) -> None:
        self.states = states

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        window = GaugeMetricFamily(
            "chainsync_rpc_window",
            "Requests the endpoint may have in flight now (adapts up to the cap).",
            labels=["endpoint"],
        )
        in_flight = GaugeMetricFamily(
            "chainsync_rpc_in_flight", "Requests in flight to the endpoint now.", labels=["endpoint"]
        )
        pace = GaugeMetricFamily(
            "chainsync_rpc_pace", "Requests per second the endpoint is paced to after a rate limit (0: not paced).",
            labels=["endpoint"],
        )  # fmt: skip
        for url, size, flying, per_s in self.states():
            label = [_endpoint(url)]
            window.add_metric(label, size)
            in_flight.add_metric(label, flying)
            pace.add_metric(label, per_s or 0.0)
        yield from (window, in_flight, pace)


def parse_metrics_addr(value: str) -> tuple[str, int] | None:
    """(host, port) of CHAINSYNC_METRICS_ADDR, None for ``off``; ValueError naming the setting otherwise."""
    if value.strip().lower() == "off":
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"CHAINSYNC_METRICS_ADDR must be host:port or off, got {value!r}")
    return host.strip("[]"), int(port)


@dataclass
class MetricsServer:
    """The running /metrics listener; ``stop()`` closes it."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Serves the registry in the Prometheus text format on http://host:port/metrics (a thread); OSError
    when the address cannot be bound."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_address[1], server, thread)
