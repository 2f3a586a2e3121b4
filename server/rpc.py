"""The JSON-RPC transport to the EVM node.

Owns: one pooled HTTP connection per endpoint (httpx + orjson), JSON-RPC array
batches, retries with exponential backoff and jitter for transient failures
(connection errors, timeouts, HTTP 429 and 5xx), and failover across several
URLs in order. A call either returns the node's result or raises: an error is
never turned into an empty result.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import orjson

from server.errors import ChainsyncError

MAX_BATCH = 100


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
    """A failure worth retrying: connection error, timeout, 429, 5xx, garbage."""


def redact(url: str) -> str:
    """The URL without path or query, which often hold API keys."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


@dataclass(frozen=True)
class RetryPolicy:
    tries_per_url: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


class JsonRpc:
    """A JSON-RPC client over one or more node URLs, tried in order."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self.urls = list(urls)
        self.retry = retry
        self.should_stop = should_stop
        self._client = httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=8))
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: list[Any]) -> Any:
        return self.batch([(method, params)])[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Results of the calls, in order, sent as JSON-RPC arrays of at most MAX_BATCH."""
        results: list[Any] = []
        for start in range(0, len(calls), MAX_BATCH):
            results.extend(self._send(calls[start : start + MAX_BATCH]))
        return results

    def _send(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        with self._lock:
            ids = [next(self._ids) for _ in calls]
        single = len(calls) == 1
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, calls)]
        body = orjson.dumps(payload[0] if single else payload)
        failures: list[str] = []
        for url in self.urls:
            for attempt in range(self.retry.tries_per_url):
                if self.should_stop():
                    raise ChainsyncError(grpc.StatusCode.CANCELLED, "JOB_CANCELLED", "stopped while waiting for the node")
                try:
                    answers = self._post(url, body)
                    return _match_answers([answers] if single and isinstance(answers, dict) else answers, ids, url)
                except TransientError as exc:
                    failures.append(f"{redact(url)}: {exc}")
                    if attempt + 1 < self.retry.tries_per_url:
                        time.sleep(self.retry.delay(attempt))
        tries = len(failures)
        raise ChainsyncError(
            grpc.StatusCode.UNAVAILABLE,
            "RPC_UNAVAILABLE",
            f"the EVM node did not answer after {tries} tries over {len(self.urls)} URL(s); "
            f"last error: {failures[-1]}. Check CHAINSYNC_RPC_URL and the node.",
            {"tries": str(tries), "endpoint": failures[-1].split(": ", 1)[0]},
        )

    def _post(self, url: str, body: bytes) -> Any:
        try:
            response = self._client.post(url, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"HTTP {response.status_code}")
        try:
            answers = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise TransientError(f"HTTP {response.status_code} with a body that is not JSON") from exc
        if response.status_code >= 400 and not isinstance(answers, (dict, list)):
            raise TransientError(f"HTTP {response.status_code}")
        return answers


def _match_answers(answers: Any, ids: list[int], url: str) -> list[Any]:
    if not isinstance(answers, list):
        if isinstance(answers, dict) and "error" in answers:
            err = answers["error"]
            raise RpcError(err.get("code", 0), err.get("message", ""), err.get("data"), redact(url))
        raise TransientError("the node's answer is not a JSON-RPC batch")
    by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
    results = []
    for i in ids:
        answer = by_id.get(i)
        if answer is None:
            raise TransientError(f"the node's batch answer lacks id {i}")
        if "error" in answer and answer["error"] is not None:
            err = answer["error"]
            raise RpcError(err.get("code", 0), err.get("message", ""), err.get("data"), redact(url))
        if "result" not in answer:
            raise TransientError(f"the node's answer for id {i} has no result")
        results.append(answer["result"])
    return results
