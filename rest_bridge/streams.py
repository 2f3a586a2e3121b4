"""The bridge's two streaming bodies: server-sent events from WatchJob, NDJSON records from GetResult pages.

Owns the SSE framing (``job``, ``end``, ``error`` events, ``: ping``) and the
NDJSON lines (one per record of each kind of server/kinds.py, then a summary).

Both are async generators over the one shared gRPC channel: a stream costs a
coroutine, not a thread, and neither ever holds more than one message or page.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import orjson
from chainsync.v1 import jobs_pb2
from starlette.responses import StreamingResponse

from rest_bridge.convert import job_json, record_json, result_summary_json, rfc3339
from rest_bridge.errors import rpc_error_parts
from server.kinds import KIND_NAMES
from server.states import STATE_NAME, TERMINAL_ENUMS

SSE_RETRY_MS = 2000  # how long a browser waits before reconnecting
PING = b": ping\n\n"


def sse_event(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def job_events(call: Any, first: jobs_pb2.JobEvent | None, ping_s: float, target: str) -> AsyncIterator[bytes]:
    """SSE frames for a WatchJob call: ``job`` events (id = sequence), ``: ping`` when idle, ``end`` after the last.

    ``first`` is an event already read from the call (None when resuming). A
    gRPC error mid-stream (the job was deleted, the server went away) becomes
    an ``error`` event with the bridge's error body; then the stream closes.
    """
    read: asyncio.Future | None = None
    try:
        yield f"retry: {SSE_RETRY_MS}\n\n".encode()
        event = first
        for _ in range(1_000_000):  # a job has far fewer events; bounds the loop all the same
            if event is not None:
                # eventTime: when the server recorded this change (clients measure their delay with it)
                data = {**job_json(event.job), "eventTime": rfc3339(event.time)}
                yield sse_event("job", data, event.sequence)
                if event.job.state in TERMINAL_ENUMS:
                    yield sse_event("end", {"jobId": event.job.id, "status": STATE_NAME[event.job.state]})
                    return
            read = asyncio.ensure_future(call.read())
            while not read.done():
                done, _ = await asyncio.wait({read}, timeout=ping_s)
                if not done:
                    yield PING
            message, read = read.result(), None
            if message is grpc.aio.EOF:
                return  # the server ended the stream early (shutting down): the client reconnects with Last-Event-ID
            event = message
    except grpc.aio.AioRpcError as err:
        _, body = rpc_error_parts(err, target)
        yield sse_event("error", body)
    finally:
        if read is not None:
            read.cancel()
        call.cancel()


async def ndjson_records(
    fetch: Callable[[str], Awaitable[jobs_pb2.SyncResult]],
    first: jobs_pb2.SyncResult,
    page_size: int,
    completed_at: str,
    target: str,
) -> AsyncIterator[bytes]:
    """One line per record (``{"kind": <kind name>, ...}``), page by page, then a ``summary`` line.

    Within a kind, records come in order; pages interleave the kinds. A gRPC
    error between pages becomes a final ``{"kind": "error", ...}`` line.
    """
    page = first
    sent = dict.fromkeys(KIND_NAMES, 0)
    total = sum(getattr(first, f"{kind}_total") for kind in KIND_NAMES)
    try:
        for _ in range(math.ceil(total / page_size) + 1):  # bounded: at most this many pages
            for kind in KIND_NAMES:
                records = getattr(page, kind)
                sent[kind] += len(records)
                for record in records:
                    yield orjson.dumps({"kind": kind, **record_json(record)}) + b"\n"
            if not page.next_page_token:
                break
            page = await fetch(page.next_page_token)
    except grpc.aio.AioRpcError as err:
        _, body = rpc_error_parts(err, target)
        yield orjson.dumps({"kind": "error", **body}) + b"\n"
        return
    summary = {
        "kind": "summary",
        "jobId": first.job_id,
        **result_summary_json(first),
        "completedAt": completed_at,
        "sent": sent,
    }
    yield orjson.dumps(summary) + b"\n"


class EventStream(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
