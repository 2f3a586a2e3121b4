"""Wiring: builds the job store, the runner and the gRPC server, and runs them.

``chainsync serve`` calls ``run(settings)``; tests start the same command as a
real process on a loopback port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from server.config import Settings
from server.contracts import entity_kinds, load_deployment
from server.interceptors import ErrorInterceptor
from server.jobs import SyncJobDeps, run_sync_job
from server.runner import Runner
from server.servicer import JobService
from server.store import JobStore, SQLiteJobStore

log = logging.getLogger("chainsync.serve")

SHUTDOWN_GRACE_S = 5.0


def open_store(db: str) -> JobStore:
    if db.startswith(("postgresql://", "postgres://")):
        raise SystemExit("CHAINSYNC_DB: the PostgreSQL job store is not available yet; use a SQLite path")
    return SQLiteJobStore(db)


async def serve(settings: Settings) -> bool:
    store = open_store(settings.db)
    deps = SyncJobDeps(
        rpc_urls=settings.rpc_urls,
        load_deployment=lambda: load_deployment(settings.deployment_path),
        kinds=entity_kinds(),
        confirmations=settings.confirmations,
        log_chunk_blocks=settings.log_chunk_blocks,
    )
    runner = Runner(store, lambda ctx: run_sync_job(ctx, deps), settings.workers)
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    jobs_pb2_grpc.add_JobServiceServicer_to_server(
        JobService(store, runner.wake, settings.job_timeout_s), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = (
        jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(service_names, server)
    port = server.add_insecure_port(settings.grpc_addr)
    if port == 0:
        raise SystemExit(f"CHAINSYNC_GRPC_ADDR: cannot listen on {settings.grpc_addr}")
    await server.start()
    runner.start()
    for name in (service_names[0], ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = settings.grpc_addr.rsplit(":", 1)[0]
    print(f"chainsync gRPC JobService listening on {host}:{port} (store: {settings.db})", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await health_servicer.enter_graceful_shutdown()
    drained = await asyncio.to_thread(runner.stop, SHUTDOWN_GRACE_S)
    await server.stop(SHUTDOWN_GRACE_S)
    return drained


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not asyncio.run(serve(settings)):
        # A job still blocked on the node after the grace period: its state stays
        # in the store; leave without joining its thread.
        log.warning("jobs still running after %.0f s; exiting anyway", SHUTDOWN_GRACE_S)
        logging.shutdown()
        os._exit(0)
