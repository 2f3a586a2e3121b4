"""Log setup and log context for the server and the bridge.

Owns: the line formats (one JSON object per line, or plain text for a person
at a terminal), the context every line carries without being passed around
(``job_id`` and ``request_id`` in contextvars: the runner sets them for a job,
the gRPC call wrapper and the bridge middleware for a call), the request-id
rules (``valid_request_id``, ``new_request_id``), masking of secrets (API
tokens, RPC URL paths and queries) in every line, ``setup``, which
``chainsync serve`` and ``chainsync bridge`` call once at start, and
``announce``, their start-up lines on stdout.
docs/logging.md describes the format and the settings.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any
from urllib.parse import urlsplit

import orjson

FORMATS = ("auto", "json", "text")
LEVELS = ("debug", "info", "warning", "error")
MAX_REQUEST_ID = 128

job_id_var: ContextVar[str | None] = ContextVar("chainsync_job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("chainsync_request_id", default=None)

# What a LogRecord holds by itself; anything else on a record came from ``extra=`` and is a field of the line.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_CONTEXT = ("job_id", "request_id")
MASK = "***"


def redact(url: str) -> str:
    """A URL without path or query, which often hold API keys: what logs, errors and metrics show of an endpoint."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


def valid_request_id(value: str) -> bool:
    """A request id a client may choose: 1 to 128 printable ASCII characters (space to ``~``)."""
    return 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable()


def new_request_id() -> str:
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    return request_id_var.get()


def bind(*, job_id: str | None = None, request_id: str | None = None) -> tuple[Token, Token]:
    """Sets the log context of this thread or task; give the result to ``unbind`` to restore it."""
    return job_id_var.set(job_id), request_id_var.set(request_id)


def unbind(tokens: tuple[Token, Token]) -> None:
    job_id_var.reset(tokens[0])
    request_id_var.reset(tokens[1])


@contextmanager
def log_context(*, job_id: str | None = None, request_id: str | None = None) -> Iterator[None]:
    tokens = bind(job_id=job_id, request_id=request_id)
    try:
        yield
    finally:
        unbind(tokens)


def announce(line: str) -> None:
    """A start-up line ("listening on ...") on stdout, written whole in one call. print() writes the text and
    its newline apart, and with PYTHONUNBUFFERED (set in many container images) each is a write of its own: a
    log line another thread wrote between them, to stderr on the same file or pipe, was glued to the end of
    the start-up line, and a reader of one JSON object per line lost it."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def secrets_of(tokens: Iterable[str] = (), urls: Iterable[str] = ()) -> list[str]:
    """The strings no line may show: API tokens, and the parts of URLs that hold keys (userinfo, path, query)."""
    found = [t for t in tokens if t]
    for url in urls:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        if parts.path not in ("", "/"):
            found.append(parts.path.strip("/"))
        if parts.query:
            found.append(parts.query)
            found.extend(value for _, _, value in (p.partition("=") for p in parts.query.split("&")) if value)
    # Longest first, so a secret that contains another is masked whole; very short ones would mask
    # ordinary words and are not keys.
    return sorted({s for s in found if len(s) >= 6}, key=len, reverse=True)


def _utc(created: float) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-11-29T08:40:35.123Z."""
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class _Masking(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        pairs = []
        for secret in secrets:
            pairs.append(secret)
            escaped = orjson.dumps(secret).decode()[1:-1]  # as it appears inside a JSON string
            if escaped != secret:
                pairs.append(escaped)
        self.secrets = tuple(pairs)

    def mask(self, line: str) -> str:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        return line

    @staticmethod
    def fields(record: logging.LogRecord) -> dict[str, Any]:
        """The line's context (``extra=`` wins over the contextvars) and other ``extra=`` fields."""
        out: dict[str, Any] = {}
        job_id = record.__dict__.get("job_id") or job_id_var.get()
        request_id = record.__dict__.get("request_id") or request_id_var.get()
        if job_id:
            out["job_id"] = job_id
        if request_id:
            out["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in _CONTEXT:
                out[key] = value
        return out


class JsonFormatter(_Masking):
    """One JSON object per line: time, level, logger, message, job_id, request_id, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in self.fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.mask(orjson.dumps(entry, default=str).decode())


class TextFormatter(_Masking):
    """``<time> <LEVEL> <logger>: <message> key=value ...`` and the traceback below, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        extra = " ".join(f"{k}={v}" for k, v in self.fields(record).items())
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        elif record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return self.mask(line)


def resolve_format(fmt: str, stream: Any = None) -> str:
    """``auto``: text when the log stream is a terminal, JSON otherwise (a file, a pipe, a log collector)."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def check_settings(fmt: str, level: str) -> tuple[str, str]:
    """(format, level) normalised, or SystemExit naming the setting."""
    fmt, level = fmt.strip().lower(), level.strip().lower()
    if fmt not in FORMATS:
        raise SystemExit(f"CHAINSYNC_LOG_FORMAT (--log-format) must be auto, json or text, got {fmt!r}")
    if level not in LEVELS:
        raise SystemExit(f"CHAINSYNC_LOG_LEVEL must be debug, info, warning or error, got {level!r}")
    return fmt, level


def setup(fmt: str = "auto", level: str = "info", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Every logger of the process (ours, grpc's, uvicorn's) writes through one handler on stderr."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    formatter = JsonFormatter if resolve_format(fmt, stream) == "json" else TextFormatter
    handler.setFormatter(formatter(secrets))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO with its URL, which may hold an RPC key; retries are logged by server.transport.rpc.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


REQUEST_ID_KEY = "xRequestId"  # where a job's stored request keeps the request id of the call that started it


def job_request_id(request: dict[str, Any]) -> str | None:
    return request.get(REQUEST_ID_KEY)
