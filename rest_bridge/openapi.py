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

BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "`Authorization: Bearer <token>`, passed through to the gRPC server as metadata. Needed when "
    "the server runs with CHAINSYNC_API_TOKEN; /healthz, /openapi.json and /docs are open.",
}
SECURED = {"security": [{"bearer": []}]}  # openapi_extra of every JobService route
ERROR_TEXT = {
    400: "Bad input: the `details.field` names what (INVALID_ARGUMENT, INVALID_JOB_ID, ...)",
    401: "Missing or wrong bearer token (MISSING_TOKEN, INVALID_TOKEN)",
    404: "No such job (JOB_NOT_FOUND)",
    409: "The job is not in a state that allows this (JOB_NOT_COMPLETED with `details.state`, JOB_STILL_RUNNING)",
    413: "Request body over 64 KiB (BODY_TOO_LARGE)",
    429: "The server is overloaded (RESOURCE_EXHAUSTED)",
    500: "Unexpected error (INTERNAL)",
    503: "The gRPC server is unreachable (GRPC_UNAVAILABLE) or the node is (RPC_UNAVAILABLE)",
    504: "The gRPC server did not answer in time (GRPC_TIMEOUT)",
}
ALWAYS = (400, 401, 500, 503, 504)  # any JobService call can fail so


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a JobService route that can also fail with these statuses."""
    return {s: {"model": models.ErrorBody, "description": ERROR_TEXT[s]} for s in sorted({*statuses, *ALWAYS})}


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
