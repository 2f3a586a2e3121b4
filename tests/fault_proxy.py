"""A real HTTP proxy between the sync and anvil that misbehaves on demand.

It forwards JSON-RPC POSTs to the upstream node and, as configured, delays
them, answers 429 or 503, drops the connection, or corrupts the body: what
public RPC providers do. It runs in a thread of the test on a loopback port
and is stopped by the test (use it as a context manager).
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Faults:
    delay_s: float = 0.0  # added before forwarding each request
    delay_only: tuple[str, ...] = ()  # when set: delay only requests calling one of these methods
    status: int | None = None  # answer this HTTP status instead of forwarding (429, 503)
    drop: bool = False  # close the connection without an answer
    corrupt: bool = False  # forward, then cut the answer's body in half
    strip_log_field: str | None = None  # forward, then remove this field from each log of an eth_getLogs answer
    rate: float = 1.0  # share of requests the status/drop/corrupt/strip faults hit (the delay hits all)
    fail_next: int = -1  # when >= 0: only that many more requests are hit, then the faults stop
    provider: str = "generic"  # whose error text the range/result caps answer with (see PROVIDER_ERRORS)
    max_range: int | None = None  # eth_getLogs ranges wider than this are refused
    max_results: int | None = None  # eth_getLogs answers with more logs than this are refused
    unsupported: tuple[str, ...] = ()  # JSON-RPC methods answered as geth answers a method it lacks (-32601)
    no_block_hash: bool = False  # a node without EIP-1898: a call naming its block by hash gets -32602


def _parsed(body: bytes) -> Any:
    """The request's JSON, None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def provider_error(provider: str, cap: str, start: int, end: int, limit: int) -> dict:
    """The JSON-RPC error object a provider answers when an eth_getLogs range (cap "range") or
    its result (cap "results") is over its limit, with the provider's real wording."""
    half = hex(start + max(0, (end - start) // 2 - 1))
    if provider == "infura":
        return {
            "code": -32005,
            "message": "query returned more than 10000 results",
            "data": {"from": hex(start), "to": half},
        }
    if provider == "alchemy":
        return {
            "code": -32602,
            "message": (
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
                "limit on the response size, or you can request any block range with a cap of 10K logs in the "
                f"response. Based on your parameters, this block range should work: [{hex(start)}, {half}]"
            ),
        }
    if provider == "quicknode":
        return {"code": -32614, "message": f"eth_getLogs is limited to a {limit:,} range"}
    if provider == "erigon":
        return {"code": -32000, "message": "query block range exceeds server limit"}
    if provider == "reth":
        what = f"max block range {limit}" if cap == "range" else f"max results {limit}"
        return {"code": -32602, "message": f"query exceeds {what}"}
    if provider == "geth":
        return {"code": -32005, "message": "query returned more than 10000 results"}
    return {"code": -32000, "message": "block range too large"}


PROVIDERS = ("infura", "alchemy", "quicknode", "erigon", "reth", "geth", "generic")


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults | None = None, seed: int = 7) -> None:
        self.upstream = upstream
        self.faults = faults or Faults()
        self.requests = 0
        self.faulted = 0
        self.refused = 0  # range or result-size refusals answered
        self.unsupported_asked = 0  # calls to a method the node lacks (Faults.unsupported)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                proxy._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _hit(self) -> bool:
        with self._lock:
            f = self.faults
            if f.fail_next == 0:
                return False
            hit = self._random.random() < f.rate
            if hit:
                self.faulted += 1
                if f.fail_next > 0:
                    f.fail_next -= 1
            return hit

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        f = self.faults
        with self._lock:
            self.requests += 1
        if f.delay_s and (not f.delay_only or any(f'"{m}"'.encode() in body for m in f.delay_only)):
            threading.Event().wait(f.delay_s)
        strips = f.strip_log_field is not None and self._get_logs(body) is not None
        hit = bool(f.status or f.drop or f.corrupt or strips) and self._hit()
        if hit and f.drop:
            handler.close_connection = True
            handler.connection.close()
            return
        if hit and f.status:
            payload = b'{"error": "Too Many Requests"}' if f.status == 429 else b"Service Unavailable"
            self._reply(handler, f.status, payload)
            return
        refusal = self._range_refusal(body) or self._unsupported(body) or self._block_hash_refusal(body)
        if refusal is not None:
            self._reply(handler, 200, json.dumps(refusal).encode())
            return
        upstream = self._client.post(self.upstream, content=body, headers={"content-type": "application/json"})
        payload = upstream.content
        refusal = self._result_refusal(body, payload)
        if refusal is not None:
            payload = json.dumps(refusal).encode()
        if hit and f.corrupt:
            payload = payload[: len(payload) // 2]
        if hit and strips:
            answer = json.loads(payload)
            for entry in answer.get("result") or []:
                entry.pop(f.strip_log_field, None)
            payload = json.dumps(answer).encode()
        self._reply(handler, upstream.status_code, payload)

    def _get_logs(self, body: bytes) -> tuple[Any, int, int] | None:
        """(request id, from, to) when body is a single eth_getLogs request."""
        request = _parsed(body)
        if not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        flt = request["params"][0]
        return request.get("id"), int(flt["fromBlock"], 16), int(flt["toBlock"], 16)

    def _unsupported(self, body: bytes) -> dict | None:
        request = _parsed(body) if self.faults.unsupported else None
        if not isinstance(request, dict) or request.get("method") not in self.faults.unsupported:
            return None
        with self._lock:
            self.unsupported_asked += 1
        message = f"the method {request['method']} does not exist/is not available"
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32601, "message": message}}

    def _block_hash_refusal(self, body: bytes) -> Any:
        """With no_block_hash: the answer of an old node to a request whose calls name a block by hash."""
        request = _parsed(body) if self.faults.no_block_hash else None
        if request is None:
            return None
        calls = request if isinstance(request, list) else [request]
        if not any(
            isinstance(c, dict) and any(isinstance(p, dict) and "blockHash" in p for p in c.get("params", []))
            for c in calls
        ):
            return None
        with self._lock:
            self.refused += 1
        errors = [
            {
                "jsonrpc": "2.0",
                "id": c.get("id"),
                "error": {"code": -32602, "message": "invalid argument 1: hex string without 0x prefix"},
            }
            for c in calls
        ]
        return errors if isinstance(request, list) else errors[0]

    def _range_refusal(self, body: bytes) -> dict | None:
        f = self.faults
        logs = f.max_range and self._get_logs(body)
        if not logs or logs[2] - logs[1] + 1 <= f.max_range:
            return None
        with self._lock:
            self.refused += 1
        error = provider_error(f.provider, "range", logs[1], logs[2], f.max_range)
        return {"jsonrpc": "2.0", "id": logs[0], "error": error}

    def _result_refusal(self, body: bytes, payload: bytes) -> dict | None:
        f = self.faults
        logs = f.max_results and self._get_logs(body)
        if not logs:
            return None
        try:
            result = json.loads(payload).get("result")
        except ValueError:
            return None
        if not isinstance(result, list) or len(result) <= f.max_results:
            return None
        with self._lock:
            self.refused += 1
        error = provider_error(f.provider, "results", logs[1], logs[2], f.max_results)
        return {"jsonrpc": "2.0", "id": logs[0], "error": error}

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
