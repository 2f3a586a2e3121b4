"""What the bridge serves besides the JobService: the jobs page at / with its /static files, /healthz, /metrics.

None of these calls the gRPC server or needs a token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from rest_bridge import models
from rest_bridge.convert import FastJSON

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Only this origin's script, style and API: no inline script, nothing fetched from elsewhere.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(default_response_class=FastJSON)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format; open like /healthz (counts only, no job data): docs/metrics.md."""
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/healthz", response_model=models.Health, tags=["meta"], summary="The bridge is up (no auth)")
async def healthz() -> Response:
    return FastJSON({"success": True})


@router.get("/", include_in_schema=False)
async def jobs_page() -> Response:
    """The jobs page (docs/jobs-page.md); its script and style are under /static, the data comes from the API."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


def static_files() -> StaticFiles:
    """The jobs page's script, style and icon, mounted at /static."""
    return StaticFiles(directory=STATIC_DIR)
