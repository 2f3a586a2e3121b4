"""The bridge app: each JSON endpoint is one call (or one stream) of the gRPC JobService.

Owns ``create_app``, which assembles the app from Settings (middleware, the
routers of rest_bridge/routes/, the error handlers of rest_bridge/errors.py,
the OpenAPI document of rest_bridge/openapi.py), and ``run``, which serves it.
JSON shapes are those of ASYNC-BLOCKCHAIN-SYNC.md (documented in
rest_bridge/models.py and at /openapi.json); errors are design.md's
``{"success": false, "error", "code", "details"}``; docs/rest-api.md has the
whole contract and the choices made.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from rest_bridge.convert import FastJSON
from rest_bridge.errors import install_handlers
from rest_bridge.jobservice import channel_lifespan
from rest_bridge.metrics import BridgeMetrics, HttpMetrics
from rest_bridge.middleware import BodySizeLimit, RequestIds
from rest_bridge.openapi import install_openapi
from rest_bridge.routes import jobs, site, sync
from server import logs
from server.config import Settings

MAX_BODY_BYTES = 64 * 1024
DESCRIPTION = (
    "The JSON endpoints of ASYNC-BLOCKCHAIN-SYNC.md, each served by the chainsync gRPC JobService "
    "(proto/chainsync/v1/jobs.proto). Errors are `{success: false, error, code, details}` with the HTTP "
    "status mapped from the gRPC code (design.md). Block numbers and uint256 values are decimal strings. "
    "Every answer carries `X-Request-ID`: the request's own (1 to 128 printable ASCII characters; another "
    "value is a 400 naming X-Request-ID) or a fresh UUIDv4; the server's logs carry it too."
)
CORS = {
    "allow_methods": ["GET", "POST", "DELETE", "OPTIONS"],
    "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "Accept", "X-Request-ID"],
    "expose_headers": ["Location", "X-Request-ID"],
    "max_age": 600,
}


def create_app(settings: Settings) -> FastAPI:
    """The bridge app, calling the JobService at settings.grpc_addr; over TLS when settings.tls_ca names the
    PEM certificate(s) to trust; allowing settings.cors_origins; with settings.access_log, one log line per request."""
    tls_ca = Path(settings.tls_ca).read_bytes() if settings.tls_ca else None
    app = FastAPI(
        title="chainsync REST bridge",
        version="1",
        description=DESCRIPTION,
        lifespan=channel_lifespan(settings.grpc_addr, tls_ca),
        default_response_class=FastJSON,
    )
    metrics = BridgeMetrics.create()  # this app's own registry
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestIds, access_log=settings.access_log)  # outside BodySizeLimit: its 413 carries the id too
    app.add_middleware(HttpMetrics, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), **CORS)
    for module in (sync, jobs, site):
        # The routers' routes go straight into the app's own list, as if declared on it: app.include_router
        # would keep each router as a nested branch, matched twice per request (~120 more Python calls on
        # the status route with FastAPI 0.165).
        app.router.routes.extend(module.router.routes)
    app.mount("/static", site.static_files(), name="static")
    install_handlers(app, metrics, settings.grpc_addr)
    install_openapi(app)
    return app


def run(settings: Settings) -> None:
    """Serves the bridge on settings.http_addr (CHAINSYNC_HTTP_ADDR); its own settings are CHAINSYNC_CORS_ORIGINS,
    CHAINSYNC_SSE_PING_SECONDS, CHAINSYNC_TLS_CA and CHAINSYNC_ACCESS_LOG (server/config.py)."""
    import uvicorn

    logs.setup(settings.log_format, settings.log_level)
    host, port = settings.http_addr.rsplit(":", 1)
    app = create_app(settings)
    scheme = "grpcs" if settings.tls_ca else "grpc"
    logs.announce(f"chainsync REST bridge on http://{host}:{port} -> {scheme}://{settings.grpc_addr}")
    # log_config=None: uvicorn's own loggers go through the handler logs.setup installed (JSON or text);
    # its access log is off, RequestIds writes a richer one (request id, route, duration) when asked.
    uvicorn.run(app, host=host, port=int(port), log_config=None, log_level=None, access_log=False)


__all__ = ["create_app", "run"]
