"""A real HTTP proxy between the sync and anvil that misbehaves on demand.

It forwards JSON-RPC POSTs to the upstream node and, as configured, delays
them, answers 429 or 503, drops the connection, or corrupts the body: what
public RPC providers do. It runs in a thread of the test on a loopback port
and is stopped by the test (use it as a context manager).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Faults:
    delay_s: float = 0.0  # added before forwarding each request
    status: int | None = None  # answer this HTTP status instead of forwarding (429, 503)
    drop: bool = False  # close the connection without an answer
    corrupt: bool = False  # forward, then cut the answer's body in half
    rate: float = 1.0  # share of requests the status/drop/corrupt faults hit (the delay hits all)
    fail_next: int = -1  # when >= 0: only that many more requests are hit, then the faults stop


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults | None = None, seed: int = 7) -> None:
        self.upstream = upstream
        self.faults = faults or Faults()
        self.requests = 0
        self.faulted = 0
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
        if f.delay_s:
            threading.Event().wait(f.delay_s)
        hit = bool(f.status or f.drop or f.corrupt) and self._hit()
        if hit and f.drop:
            handler.close_connection = True
            handler.connection.close()
            return
        if hit and f.status:
            payload = b'{"error": "Too Many Requests"}' if f.status == 429 else b"Service Unavailable"
            self._reply(handler, f.status, payload)
            return
        upstream = self._client.post(self.upstream, content=body, headers={"content-type": "application/json"})
        payload = upstream.content
        if hit and f.corrupt:
            payload = payload[: len(payload) // 2]
        self._reply(handler, upstream.status_code, payload)

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
