"""The JSON-RPC client to the EVM node.

Owns: pooled HTTP connections (httpx + orjson), JSON-RPC array batches, and
what to do when the node misbehaves. A caller that says what a call's result
is (``result_type``: a msgspec type) gets it decoded straight into that type:
the whole answer is still parsed and checked as JSON, but only the fields the
type names become Python objects (the thousands of entries of eth_getLogs and
trace_filter answers, server/engine/scan.py and silent.py), and an answer of another shape is a malformed one,
named by its path (``$.result[3].blockNumber``). Transient failures (connection errors,
timeouts, HTTP 429 and 5xx, an answer that is not JSON-RPC) are retried under
the one retry policy (server/retry.py: the next URL at once, backoff with full
jitter after each round over the URLs, a time budget per call); when the
budget is spent the call fails with ``RPC_UNAVAILABLE`` naming the endpoint,
the last error and the number of tries. A JSON-RPC error object is the node's
answer and is raised as ``RpcError`` (server/transport/provider_limits.py
tells a range refusal). Requests to one URL share that endpoint's window with
every other job of the process (server/transport/endpoints.py).

A call either returns the node's result or raises: an error never becomes an
empty result. When the job's stop token says stop, a request in flight is
abandoned within ``STOP_POLL_S``, even one the node holds open.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import copy_context
from functools import cache
from typing import Any

import httpx
import msgspec
import orjson

from server.errors import ChainsyncError
from server.logs import redact
from server.metrics import NO_METRICS, ServerMetrics
from server.retry import GaveUp, RetryPolicy, Transient, retry_after_s, retry_call, transient_http_status
from server.stopping import NEVER, Stopped, StopToken
from server.transport.endpoints import SHARED, Endpoints
from server.transport.provider_limits import RpcError, range_limit

log = logging.getLogger("chainsync.rpc")

MAX_BATCH = 100  # calls per JSON-RPC array
STOP_POLL_S = 0.1  # how often a request in flight looks at the stop token

Parser = Callable[[bytes], Any]  # an answer's bytes into JSON-RPC answers (_parser)


class TransientError(Transient):
    """A failure worth retrying; ``outcome`` names it in the metrics: http_429, http_5xx, timeout,
    connection or bad_response."""

    def __init__(self, message: str, outcome: str = "bad_response", retry_after: float | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after)
        self.outcome = outcome


class ResponseTooLarge(Exception):
    """The answer grew past the size the caller allowed; it was not read to the end."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the node's answer is larger than {limit:,} bytes")
        self.limit = limit


class JsonRpc:
    """A JSON-RPC client over one or more node URLs, tried in order."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 30.0,
        budget_s: float = 30.0,
        stop: StopToken = NEVER,
        metrics: ServerMetrics = NO_METRICS,
        endpoints: Endpoints = SHARED,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self.urls = list(urls)
        self.retry = RetryPolicy(budget_s=budget_s, base_delay_s=0.1, max_delay_s=4.0, round_size=len(self.urls))
        self.stop = stop
        self.metrics = metrics
        self.endpoints = endpoints
        self.retries = 0  # transient failures retried so far
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # sends the arrays of a large batch at once

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, method: str, params: list[Any], *, max_response_bytes: int | None = None, result_type: Any = None
    ) -> Any:
        """One call's result. With max_response_bytes, a larger answer raises ResponseTooLarge
        after reading at most that much (memory stays bounded whatever the node sends). With result_type, the
        result decoded into that msgspec type (an answer of another shape is retried as malformed)."""
        return self._send([(method, params)], max_response_bytes, _parser(result_type))[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Results of the calls, in order, sent as JSON-RPC arrays of at most MAX_BATCH, the arrays at once
        (each takes a slot of the endpoint's window)."""
        slices = [calls[start : start + MAX_BATCH] for start in range(0, len(calls), MAX_BATCH)]
        if len(slices) <= 1:
            return self._send(slices[0]) if slices else []
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chainsync-batch")
        futures = [self._pool.submit(copy_context().run, self._send, part) for part in slices]
        return [result for future in futures for result in future.result()]

    def _send(
        self, calls: Sequence[tuple[str, list[Any]]], max_bytes: int | None = None, parse: Parser = orjson.loads
    ) -> list[Any]:
        with self._lock:
            ids = [next(self._ids) for _ in calls]
        single = len(calls) == 1
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, calls)]
        body = orjson.dumps(payload[0] if single else payload)
        method = calls[0][0] if all(m == calls[0][0] for m, _ in calls) else "mixed"

        def attempt(index: int) -> list[Any]:
            url = self.urls[index % len(self.urls)]
            self.stop.raise_if_stopped()
            return self._request(url, method, body, ids, single, max_bytes, parse)

        try:
            return retry_call(attempt, self.retry, sleep=self.stop.sleep, on_retry=self._retrying)
        except GaveUp as gave_up:
            raise self._unavailable(gave_up) from gave_up.last

    def _request(
        self, url: str, method: str, body: bytes, ids: list[int], single: bool, max_bytes: int | None, parse: Parser
    ) -> Any:
        """One HTTP request and its answers matched to ids; counted in the metrics by its outcome."""
        outcome, started = "other", time.perf_counter()
        try:
            answers, started = self._post(url, body, max_bytes, parse)
            results = _match_answers([answers] if single and isinstance(answers, dict) else answers, ids, url)
            outcome = "ok"
            return results
        except TransientError as exc:
            outcome = exc.outcome
            exc.args = (f"{redact(url)}: {exc}",)
            raise
        except RpcError as exc:
            outcome = "range_refused" if range_limit(exc) else "rpc_error"
            raise
        except ResponseTooLarge:
            outcome = "too_large"
            raise
        except Stopped:
            outcome = "stopped"
            raise
        finally:
            self.metrics.rpc_request(url, method, outcome, time.perf_counter() - started)

    def _retrying(self, tries: int, error: BaseException, wait_s: float) -> None:
        """Before the next try: count the retry and say where it goes."""
        self.retries += 1
        url, next_url = self.urls[(tries - 1) % len(self.urls)], self.urls[tries % len(self.urls)]
        self.metrics.rpc_retry(url)
        failure = {"endpoint": redact(url), "error": str(error).split(": ", 1)[-1], "try": tries}
        if next_url != url:
            log.warning("RPC request failed; failing over", extra={**failure, "next_endpoint": redact(next_url)})
        else:
            log.info("RPC request failed; retrying", extra={**failure, "pause_s": round(wait_s, 3)})

    def _unavailable(self, gave_up: GaveUp) -> ChainsyncError:
        where, _, error = str(gave_up.last).partition(": ")
        return ChainsyncError(
            "RPC_UNAVAILABLE",
            f"the EVM node did not answer after {gave_up.tries} tries over {len(self.urls)} URL(s) in "
            f"{self.retry.budget_s:.0f} s; last error from {where}: {error}. Check CHAINSYNC_RPC_URL and the node.",
            {"tries": str(gave_up.tries), "endpoint": where, "error": error},
        )

    def _post(self, url: str, body: bytes, max_bytes: int | None, parse: Parser) -> tuple[Any, float]:
        """The parsed answer and when its request left (after waiting for a slot of the endpoint's window).

        A stoppable job's request runs in one of the endpoints' runner threads, so that a stop is seen within
        STOP_POLL_S even while a node holds the request open for its whole timeout; the abandoned request
        ends by its own timeout and its answer is dropped.
        """
        if self.stop is NEVER:
            return self._post_in_slot(url, body, max_bytes, parse)
        context = copy_context()  # lines the request logs carry the job's log context
        request = self.endpoints.runners.submit(lambda: context.run(self._post_in_slot, url, body, max_bytes, parse))
        while True:
            try:
                return request.result(timeout=STOP_POLL_S)
            except FutureTimeout:
                if request.done():
                    raise  # the request's own
                self.stop.raise_if_stopped()

    def _post_in_slot(self, url: str, body: bytes, max_bytes: int | None, parse: Parser) -> tuple[Any, float]:
        """_post within a slot of the endpoint's window, telling the window how it went."""
        with self.endpoints.get(url).slot(self.stop) as lease:
            started = time.perf_counter()
            try:
                answer = _post(self.endpoints.client, url, body, max_bytes, self.timeout_s, parse)
            except TransientError as exc:
                lease.outcome, lease.retry_after_s = exc.outcome, exc.retry_after_s
                raise
            lease.outcome = "ok"
            return answer, started


def _post(client: httpx.Client, url: str, body: bytes, max_bytes: int | None, timeout_s: float, parse: Parser) -> Any:
    """POSTs body and parses the JSON answer; TransientError for anything worth another try."""
    try:
        headers = {"content-type": "application/json"}
        with client.stream("POST", url, content=body, headers=headers, timeout=timeout_s) as response:
            if transient_http_status(response.status_code):
                outcome = "http_429" if response.status_code == 429 else "http_5xx"
                hint = retry_after_s(response.headers.get("retry-after"))
                raise TransientError(f"HTTP {response.status_code}", outcome, retry_after=hint)
            content = response.read() if max_bytes is None else _read_at_most(response, max_bytes)
    except httpx.HTTPError as exc:
        outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
        raise TransientError(f"{type(exc).__name__}: {exc}", outcome) from exc
    try:
        return parse(content)
    except msgspec.ValidationError as exc:  # JSON, but not of the shape asked for
        raise TransientError(f"the node's answer is malformed: {exc}") from exc
    except (orjson.JSONDecodeError, msgspec.DecodeError) as exc:
        raise TransientError(f"HTTP {response.status_code} with a body that is not JSON") from exc


@cache
def _parser(result_type: Any) -> Parser:
    """How an answer's bytes become JSON-RPC answers: orjson into plain objects, or with a result type, msgspec
    into an answer whose result is of that type (handed on as the plain answer object _match_answers reads)."""
    if result_type is None:
        return orjson.loads
    answer = msgspec.defstruct(
        "Answer",
        [
            ("id", Any, None),
            ("result", result_type | msgspec.UnsetType, msgspec.UNSET),
            ("error", dict[str, Any] | None, None),
        ],
    )
    decode = msgspec.json.Decoder(answer).decode

    def parse(content: bytes) -> dict[str, Any]:
        got = decode(content)
        plain = {"id": got.id, "error": got.error}
        if got.result is not msgspec.UNSET:
            plain["result"] = got.result
        return plain

    return parse


def _read_at_most(response: httpx.Response, max_bytes: int) -> bytes:
    parts, size = [], 0
    for part in response.iter_bytes():
        size += len(part)
        if size > max_bytes:
            raise ResponseTooLarge(max_bytes)
        parts.append(part)
    return b"".join(parts)


def _rpc_error(answer: dict[str, Any], url: str) -> RpcError:
    err = answer["error"]
    return RpcError(err.get("code", 0), str(err.get("message", "")), err.get("data"), redact(url))


def _match_answers(answers: Any, ids: list[int], url: str) -> list[Any]:
    if not isinstance(answers, list):
        if isinstance(answers, dict) and isinstance(answers.get("error"), dict):
            raise _rpc_error(answers, url)
        raise TransientError("the node's answer is not a JSON-RPC response")
    by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
    results = []
    for i in ids:
        answer = by_id.get(i)
        if answer is None:
            raise TransientError(f"the node's batch answer lacks id {i}")
        if answer.get("error") is not None:
            raise _rpc_error(answer, url)
        if "result" not in answer:
            raise TransientError(f"the node's answer for id {i} has no result")
        results.append(answer["result"])
    return results
