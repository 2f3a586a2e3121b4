"""The bridge's OpenAPI document (/openapi.json, /docs): FastAPI's, made to say what the bridge really answers.

Owns the error responses each route declares (``error_responses``, every one
an ``ErrorBody``), the bearer security scheme the JobService routes carry
(``SECURED``), and ``install_openapi``, which drops the 422 FastAPI adds to
every route (this bridge answers bad input with 400) and its validation
schemas, and puts the error body on every error response, the event stream's
included.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rest_bridge import models
from rest_bridge.errors import ROUTING_REASONS
from server.errors import CATALOGUE, HTTP_OF_CODE

BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "`Authorization: Bearer <token>`, passed through to the gRPC server as metadata. Needed when "
    "the server runs with CHAINSYNC_API_TOKEN; /healthz, /openapi.json and /docs are open.",
}
SECURED = {"security": [{"bearer": []}]}  # openapi_extra of every JobService route
# What each error status means on a JobService route; the reasons come from server/errors.py's CATALOGUE.
ERROR_HEADLINES = {
    400: "Bad input; `details.field` names what",
    401: "Missing or wrong bearer token",
    404: "No such job (for a start: `after` names none)",
    409: "The job is not in a state that allows this (for a start: `after` has not completed)",
    413: "Request body over 64 KiB",
    429: "The server is overloaded",
    500: "Unexpected error",
    503: "The gRPC server is unreachable",
    504: "The gRPC server did not answer in time",
}
ALWAYS = (400, 401, 500, 503, 504)  # any JobService call can fail so


def error_description(status: int) -> str:
    """The status's headline and the reasons a call can answer with it (a failed job's own errorCodes and the
    router's 404/405 aside); the gRPC code names when no reason has the status."""
    reasons = [
        reason
        for reason, info in CATALOGUE.items()
        if info.http == status and not info.job_only and reason not in ROUTING_REASONS.values()
    ]
    codes = reasons or [code for code, http in HTTP_OF_CODE.items() if http == status]
    return f"{ERROR_HEADLINES[status]} ({', '.join(codes)})"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a JobService route that can also fail with these statuses."""
    return {s: {"model": models.ErrorBody, "description": error_description(s)} for s in sorted({*statuses, *ALWAYS})}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, less the 422 it adds to every route, with the error body and the bearer scheme."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in doc["paths"].values():
            for operation in path.values():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                for status, response in responses.items():  # errors are JSON, even on the event stream
                    if int(status) >= 400:
                        response["content"] = {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                        }
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        doc.setdefault("components", {})["securitySchemes"] = {"bearer": BEARER_SCHEME}
        app.openapi_schema = doc
    return app.openapi_schema


def install_openapi(app: FastAPI) -> None:
    """/openapi.json (and /docs) serve ``openapi_document``, built once on first use."""
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
