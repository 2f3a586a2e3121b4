"""Wiring: builds the job store, the runner and the gRPC server, and runs them.

``chainsync serve`` calls ``run(settings)``; tests start the same command as a
real process on a loopback port.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server import logs
from server.config import Settings
from server.engine.contracts import entity_kinds, load_deployment
from server.engine.silent import TraceSupport
from server.engine.sync import SyncOptions
from server.jobs.ipfs import Gateways, IpfsSettings
from server.jobs.runner import Runner
from server.jobs.store import ContentCache, JobStore, StoreInUse, open_single_server
from server.jobs.sync_job import SyncJobDeps, run_sync_job
from server.metrics import (
    EndpointsCollector,
    JobsCollector,
    MetricsServer,
    ServerMetrics,
    parse_metrics_addr,
    serve_metrics,
)
from server.service.auth import Tokens
from server.service.calls import CallWrapper
from server.service.job_cache import JobCache
from server.service.servicer import JobService
from server.transport.endpoints import Endpoints

log = logging.getLogger("chainsync.serve")

SHUTDOWN_GRACE_S = 5.0
SERVICE_NAMES = (jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name, health.SERVICE_NAME)
REQUEST_ID_TTL_S = 24 * 60 * 60
# grpc.aio serves every call on one event loop; this bounds how many are in
# flight so a flood queues at the transport instead of exhausting memory.
MAX_CONCURRENT_RPCS = 1000
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),  # ping idle clients every 30 s (WatchJob streams stay open for long)
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # accept client pings down to 10 s
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 1 * 1024 * 1024),  # requests are small
    ("grpc.max_send_message_length", 256 * 1024 * 1024),  # a whole result in one GetResult
]


async def sweep_expired(store: JobStore, retention_s: int, stop: asyncio.Event) -> None:
    """Removes finished jobs retention_s after they ended; checks a few times per retention period."""
    interval = max(0.5, min(60.0, retention_s / 10))
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(store.purge_expired, retention_s, REQUEST_ID_TTL_S)
            if removed:
                log.info("retention: removed %d finished jobs", removed)
        except Exception:
            log.exception("retention sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass


def redact_db(db: str) -> str:
    """The store's location without a password, for logs."""
    parts = urlsplit(db)
    if parts.scheme and parts.password:
        return db.replace(f":{parts.password}@", ":***@", 1)
    return db


def open_store(db: str) -> JobStore:
    """A SQLite path, or a ``postgresql://`` URL (``?schema=NAME`` puts the tables in that schema, made if missing)."""
    if db.startswith(("postgresql://", "postgres://")):
        return _open_postgres(db)
    try:
        # One server per SQLite file, so jobs left running belong to a dead process: they resume now.
        return JobStore(open_single_server(db))
    except StoreInUse:
        raise SystemExit(f"CHAINSYNC_DB: another chainsync server is using {db}; use PostgreSQL for replicas") from None


def _open_postgres(url: str) -> JobStore:
    """Replicas share the database: no lock file and no release of orphans; a dead replica's leases expire."""
    import psycopg  # only a PostgreSQL deployment needs the driver loaded

    from server.jobs.store.postgres import PostgresConnector

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))  # no user or password
    try:
        return JobStore(PostgresConnector(dsn, schema=schema or None))
    except (psycopg.Error, ValueError) as exc:
        raise SystemExit(f"CHAINSYNC_DB: cannot open the PostgreSQL job store at {shown}: {exc}") from None


def start_metrics(settings: Settings, metrics: ServerMetrics) -> MetricsServer | None:
    """The /metrics listener of CHAINSYNC_METRICS_ADDR, or None when it is off.

    An address set by hand that cannot be bound stops the server; the default one
    (127.0.0.1:9464) taken by another chainsync server on this host only logs a
    warning, so that several replicas can run on one machine without settings.
    """
    try:
        address = parse_metrics_addr(settings.metrics_addr)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if address is None:
        return None
    try:
        return serve_metrics(*address, metrics.registry)
    except OSError as exc:
        problem = f"CHAINSYNC_METRICS_ADDR: cannot listen on {settings.metrics_addr}: {exc.strerror or exc}"
        if settings.metrics_addr != Settings.metrics_addr:
            raise SystemExit(problem) from None
        log.warning("%s; serving no metrics (set CHAINSYNC_METRICS_ADDR to another address)", problem)
        return None


def ipfs_gateways(settings: Settings) -> Gateways | None:
    """The IPFS gateways the jobs resolve the *Cid fields through; None when none is configured."""
    if not settings.ipfs_gateways:
        return None
    return Gateways(
        IpfsSettings(settings.ipfs_gateways, concurrency=settings.ipfs_concurrency, timeout_s=settings.ipfs_timeout_s)
    )


@dataclass
class Parts:
    """What one ``chainsync serve`` process runs, built from its settings."""

    settings: Settings
    store: JobStore
    metrics: ServerMetrics
    runner: Runner
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    deps: SyncJobDeps
    cache: JobCache


def sync_job_deps(settings: Settings, store: JobStore, metrics: ServerMetrics) -> SyncJobDeps:
    """What every sync job of this server is given."""
    endpoints = Endpoints(settings.rpc_concurrency)
    _ = endpoints.client  # made now, not by the first job: a TLS context and a pool take ~80 ms to make
    return SyncJobDeps(
        endpoints=endpoints,
        trace_support=TraceSupport(endpoints=endpoints),
        rpc_urls=settings.rpc_urls,
        load_deployment=lambda: load_deployment(settings.deployment_path),
        kinds=entity_kinds(),
        confirmations=settings.confirmations,
        rpc_budget_s=settings.rpc_budget_s,
        metrics=metrics,
        ipfs=ipfs_gateways(settings),
        content_cache=ContentCache(store.connector),
        sync_options=SyncOptions(
            log_chunk_blocks=settings.log_chunk_blocks,
            log_chunk_max=max(settings.log_chunk_blocks, settings.log_chunk_max),
            silent_changes=settings.silent_changes,
            reorg_window=settings.reorg_window,
            concurrency=settings.rpc_concurrency,
        ),
    )


def build(settings: Settings) -> Parts:
    """Every part of the server, wired; nothing started yet."""
    try:
        parse_metrics_addr(settings.metrics_addr)  # bad input stops the server before anything opens
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    store = open_store(settings.db)
    metrics = ServerMetrics.create()
    deps = sync_job_deps(settings, store, metrics)
    runner = Runner(store, lambda ctx: run_sync_job(ctx, deps), settings.workers, lease_s=settings.lease_s)
    metrics.registry.register(
        JobsCollector(store.count_by_state, lambda: (len(runner.running_job_ids()), runner.workers))
    )
    metrics.registry.register(EndpointsCollector(lambda: endpoint_states(deps.endpoints)))
    tokens = Tokens.parse(settings.api_token) if settings.api_token else None
    calls = CallWrapper(metrics, tokens)
    server = grpc.aio.server(
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    cache = JobCache(store, settings.retention_s)
    job_service = JobService(store, runner, settings.job_timeout_s, tokens, cache)
    jobs_pb2_grpc.add_JobServiceServicer_to_server(calls.servicer(SERVICE_NAMES[0], job_service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(calls.servicer(health.SERVICE_NAME, health_servicer, True), server)
    reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME), server)
    port = listen(server, settings)
    return Parts(settings, store, metrics, runner, server, health_servicer, port, deps, cache)


def endpoint_states(endpoints: Endpoints) -> list[tuple[str, float, int, float | None]]:
    """(url, window, in flight, pace) of each node endpoint, for the metrics."""
    return [(e.url, (st := e.state()).window, st.in_flight, st.pace_per_s) for e in endpoints.all()]


def listen(server: grpc.aio.Server, settings: Settings) -> int:
    """Binds CHAINSYNC_GRPC_ADDR, over TLS when given a certificate; the port, or SystemExit naming the setting."""
    if settings.tls_cert and settings.tls_key:
        with open(settings.tls_key, "rb") as key, open(settings.tls_cert, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        port = server.add_secure_port(settings.grpc_addr, credentials)
    else:
        port = server.add_insecure_port(settings.grpc_addr)
    if port == 0:
        raise SystemExit(f"CHAINSYNC_GRPC_ADDR: cannot listen on {settings.grpc_addr}")
    return port


async def start(parts: Parts) -> MetricsServer | None:
    """Starts serving calls and running jobs; says where."""
    settings = parts.settings
    metrics_server = start_metrics(settings, parts.metrics)
    await parts.server.start()
    if settings.silent_changes == "auto":  # before the first job: it waits for these answers, never asks itself
        for url in settings.rpc_urls:
            parts.deps.trace_support.probe_in_background(url, parts.metrics)
    parts.runner.start()
    for name in (SERVICE_NAMES[0], ""):
        await parts.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = settings.grpc_addr.rsplit(":", 1)[0]
    tls = " over TLS" if settings.tls_cert else ""
    logs.announce(f"chainsync gRPC JobService listening on {host}:{parts.port}{tls} (store: {redact_db(settings.db)})")
    if metrics_server is not None:
        logs.announce(f"chainsync metrics on http://{metrics_server.host}:{metrics_server.port}/metrics")
    return metrics_server


async def probe_traces(parts: Parts, stop: asyncio.Event) -> None:
    """CHAINSYNC_SILENT_CHANGES=auto: asks each endpoint again every hour whether it serves trace_filter
    (``start`` asked first), so that no job sends a probe (server/engine/silent.py)."""
    if parts.settings.silent_changes != "auto":
        return
    support = parts.deps.trace_support
    while True:
        try:
            await asyncio.wait_for(stop.wait(), support.recheck_s * 0.9)
            return
        except TimeoutError:
            pass
        for url in parts.settings.rpc_urls:
            await asyncio.to_thread(support.probe_in_background(url, parts.metrics).join)


async def until_signalled(parts: Parts) -> None:
    """Runs the retention sweep, the trace probes and the job cache's following of the other replicas
    until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    following = threading.Event()
    follower = threading.Thread(target=parts.cache.follow, args=(following,), name="chainsync-follow", daemon=True)
    follower.start()
    await asyncio.gather(sweep_expired(parts.store, parts.settings.retention_s, stop), probe_traces(parts, stop))
    following.set()


async def shut_down(parts: Parts, metrics_server: MetricsServer | None) -> bool:
    """Stops claiming, gives running jobs SHUTDOWN_GRACE_S to save their checkpoint, stops serving.

    True when every job let go in time."""
    log.info("shutting down")
    await parts.health.enter_graceful_shutdown()
    drained = await asyncio.to_thread(parts.runner.stop, SHUTDOWN_GRACE_S)
    if parts.deps.ipfs:
        parts.deps.ipfs.close()
    parts.deps.endpoints.close()
    await parts.server.stop(SHUTDOWN_GRACE_S)
    if metrics_server is not None:
        metrics_server.stop()
    return drained


async def serve(settings: Settings) -> bool:
    """Builds the server, serves until a signal, shuts down; True when every running job let go in time."""
    parts = build(settings)
    metrics_server = await start(parts)
    await until_signalled(parts)
    return await shut_down(parts, metrics_server)


def fewer_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena; with a job's requests in flight on many
    threads, each holding megabytes of JSON for a moment, the arenas fragment and the RSS grows by a third
    (measured: 292 -> 226 MB on the bench chain). Two arenas, set before any thread starts, keep it down."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def fewer_collections() -> None:
    """A job makes tens of thousands of objects per answer (getter answers, touches, records; eth_getLogs and
    trace_filter entries are msgspec structs the collector does not track). With the default threshold
    (a young-generation collection every 700 allocations) the collector runs hundreds of times per answer, and
    its older generations rescan everything alive: parsing the bench chain's dense answer (14 MB) into dicts
    took 46 to 130 ms instead of 37. What exists at start-up is frozen (never rescanned),
    and collections come every 50,000 allocations; the server makes little cyclic garbage."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def run(settings: Settings) -> None:
    secrets = list(Tokens.parse(settings.api_token).values()) if settings.api_token else []
    if "://" in settings.db:
        secrets.append(urlsplit(settings.db).password or "")
    logs.setup(settings.log_format, settings.log_level, logs.secrets_of(secrets, settings.rpc_urls))
    fewer_malloc_arenas()
    fewer_collections()
    if not asyncio.run(serve(settings)):
        # A job still blocked on the node after the grace period: its state stays
        # in the store; leave without joining its thread.
        log.warning("jobs still running after %.0f s; exiting anyway", SHUTDOWN_GRACE_S)
        logging.shutdown()
        os._exit(0)
