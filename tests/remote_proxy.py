"""A node 50 ms away that limits rates and ranges, as hosted providers are: an asyncio proxy in front of anvil.

Between every client and the upstream node it

- adds a fixed round trip (``rtt_s``, default 50 ms) to every request;
- refuses ``eth_getLogs`` over more than ``max_logs_range`` blocks (default
  2,000) with Alchemy's words (-32602, "... up to a 2K block range ... this
  block range should work: [0x.., 0x..]");
- answers HTTP 429 with ``Retry-After`` above ``rate`` requests per second
  (default 50; a token bucket holding one second's worth, as providers'
  limits do: a burst is allowed, a steady excess is not); a refused request
  is not forwarded. A JSON-RPC batch is one request;
- counts requests, the most in flight at once, 429s and range refusals, and
  (``record=True``) keeps the body of every request it forwarded (the bench's
  ceiling sends exactly those again, bench/ceiling.py) and when each answer
  left;
- keeps when each request came and its answer left, and from those the most
  round trips a client made in a row (``round_trips_in_a_row``: requests
  each sent after the answer to the one before it, so no faster client
  sending them in that order could take less than that many round trips);
- can make some methods slower than the rest (``slower``: seconds added).

It speaks plain HTTP/1.1 with keep-alive (what JSON-RPC clients send), runs
its own event loop in a thread (``with RemoteProxy(url) as proxy``) or as a
program (``python tests/remote_proxy.py --upstream URL``), on loopback only.
Used by ``make bench``'s remote profile (bench/bench.py) and by the tests of
concurrent syncs (tests/test_concurrency.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

ALCHEMY_RANGE = (
    "You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can "
    "request any block range with a cap of 10K logs in the response. Based on your parameters, this block range "
    "should work: [{start}, {end}]"
)


@dataclass
class Limits:
    rtt_s: float = 0.050
    rate: float = 50.0  # requests per second; 0: no limit
    burst: float | None = None  # bucket size; None: one second's worth (rate)
    max_logs_range: int | None = 2_000
    slower: dict[str, float] = field(default_factory=dict)  # method -> seconds added to its round trip


@dataclass
class Counts:
    requests: int = 0  # every HTTP request received
    forwarded: int = 0
    rate_limited: int = 0  # answered 429
    range_refused: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    methods: dict[str, int] = field(default_factory=dict)


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> float:
        """0 when a request may go now (one token taken), else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RemoteProxy:
    def __init__(self, upstream: str, limits: Limits | None = None, port: int = 0, record: bool = False) -> None:
        self.upstream = upstream
        self.limits = limits or Limits()
        self.counts = Counts()
        self.record = record
        self.recorded: list[bytes] = []  # bodies forwarded upstream, in order (with record=True)
        self.answered: list[tuple[float, bytes]] = []  # (monotonic time, body) as their answers left (record=True)
        self.spans: list[tuple[float, float]] = []  # (came, answer left), monotonic, of every JSON-RPC request
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remote-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> RemoteProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the remote proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def reset(self) -> None:
        """Counts and records from zero, and a full bucket (between two measured runs)."""
        self.counts = Counts()
        self.recorded = []
        self.answered = []
        self.spans = []
        self._bucket = self._new_bucket()

    def round_trips_in_a_row(self) -> int:
        """The longest chain of requests (since the last reset) each of which came after the answer to the one
        before it had left: round trips a client made one after another, however many it had in flight."""
        chain: list[tuple[float, int]] = []  # (answer left, longest chain ending with that request)
        for came, left in sorted(self.spans):
            chain.append((left, 1 + max((n for earlier, n in chain if earlier <= came), default=0)))
        return max((n for _, n in chain), default=0)

    def _new_bucket(self) -> TokenBucket | None:
        limits = self.limits
        return TokenBucket(limits.rate, limits.burst or limits.rate) if limits.rate else None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._bucket = self._new_bucket()
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            self._client = client
            self._server = await asyncio.start_server(self._connection, "127.0.0.1", self._port, backlog=512)
            self._port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(1_000_000):  # keep-alive: one request after another, bounded
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self._answer(lines[0].split(" ")[0], body)
                writer.write(_response(status, extra, payload))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        counts = self.counts
        if method == "GET":  # the counts, for the bench and the tests
            return 200, {}, json.dumps(counts.__dict__).encode()
        came, spans = time.monotonic(), self.spans  # a request that came before a reset is not counted after it
        counts.requests += 1
        counts.in_flight += 1
        counts.max_in_flight = max(counts.max_in_flight, counts.in_flight)
        try:
            await asyncio.sleep(self.limits.rtt_s)
            wait = self._bucket.take() if self._bucket else 0.0
            if wait:
                counts.rate_limited += 1
                error = {"jsonrpc": "2.0", "id": None, "error": {"code": 429, "message": "Too Many Requests"}}
                return 429, {"Retry-After": str(max(1, math.ceil(wait)))}, json.dumps(error).encode()
            request = _parse(body)
            for name in _methods(request):
                counts.methods[name] = counts.methods.get(name, 0) + 1
            refusal = self._range_refusal(request)
            if refusal is not None:
                counts.range_refused += 1
                return 200, {}, json.dumps(refusal).encode()
            counts.forwarded += 1
            if self.record:
                self.recorded.append(body)
            upstream = await self._client.post(
                self.upstream, content=body, headers={"content-type": "application/json"}
            )
            slower = max((self.limits.slower.get(m, 0.0) for m in _methods(request)), default=0.0)
            if slower:
                await asyncio.sleep(slower)
            if self.record:
                self.answered.append((time.monotonic(), body))
            return upstream.status_code, {}, upstream.content
        finally:
            counts.in_flight -= 1
            spans.append((came, time.monotonic()))

    def _range_refusal(self, request: Any) -> dict[str, Any] | None:
        cap = self.limits.max_logs_range
        if not cap or not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        try:
            flt = request["params"][0]
            start, end = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        if end - start + 1 <= cap:
            return None
        message = ALCHEMY_RANGE.format(start=hex(start), end=hex(start + cap - 1))
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32602, "message": message}}


def _methods(request: Any) -> list[str]:
    """The JSON-RPC methods a request (one call or a batch) calls."""
    calls = request if isinstance(request, list) else [request]
    return [str(call.get("method")) for call in calls if isinstance(call, dict)]


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _response(status: int, headers: dict[str, str], payload: bytes) -> bytes:
    reason = {200: "OK", 429: "Too Many Requests"}.get(status, "Status")
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rtt-ms", type=float, default=50)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--max-logs-range", type=int, default=2000)
    args = parser.parse_args()
    limits = Limits(rtt_s=args.rtt_ms / 1000, rate=args.rate, max_logs_range=args.max_logs_range or None)
    with RemoteProxy(args.upstream, limits, args.port) as proxy:
        print(f"remote proxy on {proxy.url} -> {args.upstream}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
