"""The JSON-RPC transport to the EVM node.

Owns: pooled HTTP connections (httpx + orjson), JSON-RPC array batches, and
what to do when the node misbehaves:

- transient failures (connection errors, timeouts, HTTP 429 and 5xx, an answer
  that is not JSON-RPC) are retried with exponential backoff and full jitter,
  moving to the next URL in order, until a time budget is spent; then the call
  fails with ``RPC_UNAVAILABLE`` naming the endpoint, the last error and the
  number of tries;
- at most ``PER_ENDPOINT_CONCURRENCY`` requests are in flight to one endpoint
  from this process, whatever the number of jobs;
- range and result-size refusals of real providers (Infura, Alchemy,
  QuickNode, geth, erigon, reth, ...) are recognised by ``range_limit`` so the
  sync can split the range.

A call either returns the node's result or raises: an error never becomes an
empty result.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlsplit

import httpx
import orjson

from server.errors import ChainsyncError

if TYPE_CHECKING:
    from server.metrics import ServerMetrics

log = logging.getLogger("chainsync.rpc")

MAX_BATCH = 100
PER_ENDPOINT_CONCURRENCY = 4
STOP_POLL_S = 0.1  # how often a request in flight checks should_stop


def _never() -> bool:
    return False


@dataclass
class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    code: int
    message: str
    data: Any = None
    url: str = ""

    def __str__(self) -> str:
        return f"JSON-RPC error {self.code} from {self.url}: {self.message}"


class TransientError(Exception):
    """A failure worth retrying: connection error, timeout, 429, 5xx, garbage.

    ``outcome`` names it in the metrics: http_429, http_5xx, timeout, connection or bad_response.
    """

    def __init__(self, message: str, outcome: str = "bad_response") -> None:
        super().__init__(message)
        self.outcome = outcome


class ResponseTooLarge(Exception):
    """The answer grew past the size the caller allowed; it was not read to the end."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the node's answer is larger than {limit:,} bytes")
        self.limit = limit


def redact(url: str) -> str:
    """The URL without path or query, which often hold API keys."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


@dataclass(frozen=True)
class RetryPolicy:
    budget_s: float = 30.0  # total time one call may spend retrying, over every URL
    base_delay_s: float = 0.1
    max_delay_s: float = 4.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


_endpoint_slots: dict[str, threading.BoundedSemaphore] = {}
_endpoint_slots_lock = threading.Lock()


def _slots(url: str) -> threading.BoundedSemaphore:
    with _endpoint_slots_lock:
        return _endpoint_slots.setdefault(url, threading.BoundedSemaphore(PER_ENDPOINT_CONCURRENCY))


class JsonRpc:
    """A JSON-RPC client over one or more node URLs, tried in order."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        should_stop: Callable[[], bool] = _never,
        metrics: ServerMetrics | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        if metrics is None:
            from server.metrics import NO_METRICS  # here: server.metrics imports this module

            metrics = NO_METRICS
        self.urls = list(urls)
        self.retry = retry
        self.should_stop = should_stop
        self.metrics = metrics
        self.retries = 0  # transient failures retried so far (for stats)
        self._client = httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=PER_ENDPOINT_CONCURRENCY))
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: list[Any], *, max_response_bytes: int | None = None) -> Any:
        """One call's result. With max_response_bytes, a larger answer raises ResponseTooLarge
        after reading at most that much (memory stays bounded whatever the node sends)."""
        return self._send([(method, params)], max_response_bytes)[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Results of the calls, in order, sent as JSON-RPC arrays of at most MAX_BATCH."""
        results: list[Any] = []
        for start in range(0, len(calls), MAX_BATCH):
            results.extend(self._send(calls[start : start + MAX_BATCH]))
        return results

    def _send(self, calls: Sequence[tuple[str, list[Any]]], max_response_bytes: int | None = None) -> list[Any]:
        with self._lock:
            ids = [next(self._ids) for _ in calls]
        single = len(calls) == 1
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, calls)]
        body = orjson.dumps(payload[0] if single else payload)
        method = calls[0][0] if single or all(m == calls[0][0] for m, _ in calls) else "mixed"
        deadline = time.monotonic() + self.retry.budget_s
        tries = 0
        last_error = ""
        while True:
            url = self.urls[tries % len(self.urls)]
            if self.should_stop():
                raise ChainsyncError("JOB_CANCELLED", "stopped while waiting for the node")
            tries += 1
            outcome, started = "other", time.perf_counter()
            try:
                if self.should_stop is _never:
                    with _slots(url):
                        started = time.perf_counter()  # the request itself, not the wait for a slot
                        answers = self._post(url, body, max_response_bytes)
                else:
                    outcome = "stopped"  # unless it returns or fails otherwise: the job stopped meanwhile
                    answers, started = self._post_unless_stopped(url, body, max_response_bytes)
                    outcome = "other"
                results = _match_answers([answers] if single and isinstance(answers, dict) else answers, ids, url)
                outcome = "ok"
                return results
            except TransientError as exc:
                outcome = exc.outcome
                last_error = f"{redact(url)}: {exc}"
                self.retries += 1
            except RpcError as exc:
                outcome = "range_refused" if range_limit(exc) else "rpc_error"
                raise
            except ResponseTooLarge:
                outcome = "too_large"
                raise
            finally:
                self.metrics.rpc_request(url, method, outcome, time.perf_counter() - started)
            # Back off after a full round over the URLs; the next URL is tried at once.
            pause = self.retry.delay(tries // len(self.urls)) if tries % len(self.urls) == 0 else 0.0
            if time.monotonic() + pause >= deadline:
                break
            self.metrics.rpc_retry(url)
            next_url = self.urls[tries % len(self.urls)]
            failure = {"endpoint": redact(url), "error": last_error.split(": ", 1)[-1], "try": tries}
            if next_url != url:
                log.warning("RPC request failed; failing over", extra={**failure, "next_endpoint": redact(next_url)})
            else:
                log.info("RPC request failed; retrying", extra={**failure, "pause_s": round(pause, 3)})
            _sleep_unless(self.should_stop, pause)
        raise ChainsyncError(
            "RPC_UNAVAILABLE",
            f"the EVM node did not answer after {tries} tries over {len(self.urls)} URL(s) in "
            f"{self.retry.budget_s:.0f} s; last error from {last_error}. Check CHAINSYNC_RPC_URL and the node.",
            {"tries": str(tries), "endpoint": last_error.split(": ", 1)[0], "error": last_error.split(": ", 1)[-1]},
        )

    def _post_unless_stopped(self, url: str, body: bytes, max_bytes: int | None) -> tuple[Any, float]:
        """``_post`` (and its answer's start time) from a daemon thread of its own, so that a stop (a
        cancel, the job's timeout, a shutdown) is seen within STOP_POLL_S even while a node holds the
        request open for its whole timeout. should_stop raises or returns True; the abandoned request
        ends by its own timeout and its answer is dropped."""
        done = threading.Event()
        outcome: list[Any] = []

        def post() -> None:
            try:
                with _slots(url):
                    started = time.perf_counter()
                    outcome.append((self._post(url, body, max_bytes), started))
            except BaseException as exc:  # handed to the waiting thread
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=post, name="chainsync-rpc-request", daemon=True).start()
        while not done.wait(STOP_POLL_S):
            if self.should_stop():
                raise ChainsyncError("JOB_CANCELLED", "stopped while waiting for the node")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _post(self, url: str, body: bytes, max_bytes: int | None) -> Any:
        try:
            with self._client.stream(
                "POST", url, content=body, headers={"content-type": "application/json"}
            ) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    outcome = "http_429" if response.status_code == 429 else "http_5xx"
                    raise TransientError(f"HTTP {response.status_code}", outcome)
                if max_bytes is None:
                    content = response.read()
                else:
                    parts, size = [], 0
                    for part in response.iter_bytes():
                        size += len(part)
                        if size > max_bytes:
                            raise ResponseTooLarge(max_bytes)
                        parts.append(part)
                    content = b"".join(parts)
        except httpx.HTTPError as exc:
            outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
            raise TransientError(f"{type(exc).__name__}: {exc}", outcome) from exc
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise TransientError(f"HTTP {response.status_code} with a body that is not JSON") from exc


def _sleep_unless(should_stop: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not should_stop():
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def _match_answers(answers: Any, ids: list[int], url: str) -> list[Any]:
    if not isinstance(answers, list):
        if isinstance(answers, dict) and isinstance(answers.get("error"), dict):
            err = answers["error"]
            raise RpcError(err.get("code", 0), str(err.get("message", "")), err.get("data"), redact(url))
        raise TransientError("the node's answer is not a JSON-RPC response")
    by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
    results = []
    for i in ids:
        answer = by_id.get(i)
        if answer is None:
            raise TransientError(f"the node's batch answer lacks id {i}")
        if answer.get("error") is not None:
            err = answer["error"]
            raise RpcError(err.get("code", 0), str(err.get("message", "")), err.get("data"), redact(url))
        if "result" not in answer:
            raise TransientError(f"the node's answer for id {i} has no result")
        results.append(answer["result"])
    return results


# -- provider range and result-size limits ------------------------------------

_SUGGESTED_PAIR = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")  # Alchemy
_RANGE_NUMBER = re.compile(
    r"(?:up to (?:a )?|max(?:imum)? (?:block )?range(?: of| is)? |limited to (?:a )?|range (?:of|limit(?: of)?) )"
    r"(\d[\d,]*)(k?)",
    re.IGNORECASE,
)
_LIMIT_WORDS = (
    "query returned more than",  # Infura, geth
    "log response size exceeded",  # Alchemy
    "block range",  # "block range too large", "block range is too wide", erigon's "...block range exceeds..."
    "range too large",
    "range is too large",
    "exceeds max block range",  # reth
    "exceeds max results",  # reth
    "limit exceeded",
    "too many results",
    "response size",
    "is limited to",  # QuickNode
    "max range",
    "more than 10000",
)
_LIMIT_CODES = (-32005, -32614)  # Infura "limit exceeded", QuickNode "range limit"


@dataclass(frozen=True)
class RangeLimit:
    """A provider refused an eth_getLogs range; ``suggested_blocks`` when it said what would work."""

    suggested_blocks: int | None


def range_limit(err: RpcError) -> RangeLimit | None:
    """Whether err is a range or result-size refusal of eth_getLogs, and the range the provider suggests."""
    text = err.message.lower()
    data = err.data
    if not (err.code in _LIMIT_CODES or any(word in text for word in _LIMIT_WORDS)):
        return None
    if isinstance(data, dict) and "from" in data and "to" in data:  # Infura: {"from": "0x..", "to": "0x.."}
        try:
            return RangeLimit(int(data["to"], 16) - int(data["from"], 16) + 1)
        except (TypeError, ValueError):
            pass
    pair = _SUGGESTED_PAIR.search(err.message)
    if pair:
        return RangeLimit(int(pair.group(2), 16) - int(pair.group(1), 16) + 1)
    number = _RANGE_NUMBER.search(err.message)
    if number:
        value = int(number.group(1).replace(",", "")) * (1000 if number.group(2).lower() == "k" else 1)
        if "result" not in err.message[number.start() : number.end() + 10].lower():
            return RangeLimit(value)
    return RangeLimit(None)
