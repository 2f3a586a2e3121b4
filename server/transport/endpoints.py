"""The node endpoints of this process: how many requests each may have in flight, and how fast they may go.

One ``Endpoint`` per URL for the whole process (``Endpoints``, made once by
the server and handed to every job), so two jobs on one provider share its
window instead of each taking a window of its own. The window adapts, as TCP
does to a network and Ponder's RPC layer to a provider:

- it starts at ``INITIAL_WINDOW`` requests in flight, the default cap: a
  window growing from 4 made a new server's first small sync four or five
  round trips in a row where the next ones take three; it grows by one
  request per window of successes (additive increase), up to the cap
  (``CHAINSYNC_RPC_CONCURRENCY``);
- an answer that says "too much" (HTTP 429, a 5xx, a timeout) halves it, at
  most once per round trip (multiplicative decrease), and never below one;
- a refusal with ``Retry-After`` (the provider says it limits a rate) is
  honoured: no request starts before it has passed; and it sets a pace:
  requests start no faster than half the rate they were sent at over the
  last second (nor than 90 % of the rate the provider accepted: a burst
  allowance hides a rate limit until it runs out), which then creeps up by
  5 % a second while nothing is refused. (A 429 without it only halves the window: some proxies answer 429
  for reasons that have nothing to do with the rate.)

So a rate-limited provider gets what it allows and no more, and an endpoint
that answers everything quickly gets the whole cap. The largest eth_getLogs
range a provider said it accepts (``logs_range``) is kept too: the next jobs
size their chunks within it instead of being refused again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from server.config import DEFAULT_RPC_CONCURRENCY
from server.stopping import NEVER, StopToken

INITIAL_WINDOW = float(DEFAULT_RPC_CONCURRENCY)  # a higher cap is reached by growing from here
CONGESTION = frozenset({"http_429", "http_5xx", "timeout"})
PACE_SHARE = 0.9  # a learned pace is at most this share of the rate the provider accepted...
PACE_CUT = 0.5  # ...and at most this share of the rate requests were sent at (a burst allowance hides the rate)
PACE_GROWTH = 0.05  # per second without a refusal, the pace goes up by this share
WAIT_POLL_S = 0.1  # a request waiting for a slot looks at its stop token this often
RUNNERS = 256  # threads for requests at most: as many as the HTTP client's connections


@dataclass
class EndpointState:
    """What an endpoint's window is now (for metrics, logs and tests)."""

    window: float
    in_flight: int
    max_in_flight: int
    pace_per_s: float | None
    paused_for_s: float


class Endpoint:
    """One node URL: the window of requests in flight, the pace after a 429, the pause a Retry-After asks for."""

    def __init__(self, url: str, cap: int = DEFAULT_RPC_CONCURRENCY) -> None:
        self.url = url
        self.cap = max(1, cap)
        self._window = min(float(self.cap), INITIAL_WINDOW)
        self._in_flight = 0
        self._max_in_flight = 0
        self._paused_until = 0.0
        self._pace: float | None = None  # requests per second, after a 429
        self._paced_at = 0.0  # when the pace was last set or grown
        self._next_start = 0.0
        self._last_decrease = 0.0
        self._done: deque[float] = deque(maxlen=4096)  # when recent requests ended well
        self._starts: deque[float] = deque(maxlen=4096)  # when recent requests started
        self._cond = threading.Condition()
        self.logs_range: int | None = None  # the eth_getLogs range (blocks) a refusal said would work

    def learned_logs_range(self, blocks: int) -> None:
        """The provider refused a wider eth_getLogs range and said this many blocks would work."""
        with self._cond:
            self.logs_range = min(self.logs_range or blocks, blocks)

    @contextmanager
    def slot(self, stop: StopToken = NEVER) -> Iterator[Lease]:
        """Holds one slot of the window while a request is in flight; tell the lease how it ended."""
        lease = Lease(self, time.monotonic())
        self._acquire(stop)
        lease.started = time.monotonic()
        try:
            yield lease
        finally:
            self._release(lease)

    def state(self) -> EndpointState:
        with self._cond:
            return EndpointState(
                self._window, self._in_flight, self._max_in_flight, self._pace,
                max(0.0, self._paused_until - time.monotonic()),
            )  # fmt: skip

    def _acquire(self, stop: StopToken) -> None:
        with self._cond:
            while True:
                stop.raise_if_stopped()
                now = time.monotonic()
                wait = max(self._paused_until, self._next_start) - now
                if self._in_flight < int(self._window) and wait <= 0:
                    break
                self._cond.wait(min(WAIT_POLL_S, wait) if wait > 0 else WAIT_POLL_S)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._starts.append(now)
            self._next_start = now + (1 / self._pace if self._pace else 0.0)

    def _release(self, lease: Lease) -> None:
        with self._cond:
            now = time.monotonic()
            self._in_flight -= 1
            if lease.outcome in CONGESTION:
                self._slow_down(now, lease)
            elif lease.outcome == "ok":
                self._done.append(now)
                self._window = min(float(self.cap), self._window + 1 / self._window)
                if self._pace and now - self._paced_at >= 1.0:
                    self._pace *= 1 + PACE_GROWTH * (now - self._paced_at)
                    self._paced_at = now
            self._cond.notify_all()

    def _slow_down(self, now: float, lease: Lease) -> None:
        if lease.started >= self._last_decrease:  # once per round trip: requests sent before the last cut don't count
            self._window = max(1.0, self._window / 2)
            self._last_decrease = now
        if lease.retry_after_s is None:
            return
        # A 429 (or 503) with Retry-After: the provider says it limits a rate. Pause as asked, and from then on
        # start requests no faster than it accepted over the last second (at most one new pace a second, so that
        # a burst of refusals answering one burst of requests counts once).
        self._paused_until = max(self._paused_until, now + lease.retry_after_s)
        if self._pace is None or now - self._paced_at >= 1.0:
            accepted = sum(1 for t in self._done if t > now - 1.0)  # over the last second (a young endpoint: low)
            sent = sum(1 for t in self._starts if t > now - 1.0)
            pace = max(1.0, min(PACE_SHARE * accepted, PACE_CUT * sent))
            self._pace = min(self._pace, pace) if self._pace else pace
            self._paced_at = now


@dataclass
class Lease:
    """One slot of an endpoint's window, held by one request; ``outcome`` as the metrics name it."""

    endpoint: Endpoint
    started: float
    outcome: str = "other"
    retry_after_s: float | None = None


class RequestThreads:
    """The threads a stoppable job's requests run in, so that the job can stop while a node holds one open.

    Made as needed, up to ``most``, and kept once idle: a new thread per request cost a job 2-5 % of its
    time on the bench chain. Daemons, unlike a ThreadPoolExecutor's: the process exits without waiting for
    a request that a stopped job left behind (it ends by its own timeout, its answer dropped).
    """

    def __init__(self, most: int) -> None:
        self._queue: queue.SimpleQueue[tuple[Future, Callable[[], Any]] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._most = most

    def submit(self, request: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._queue.put((future, request))
        if not self._idle.acquire(blocking=False):  # none idle: one more thread, unless there are enough
            with self._lock:
                if self._threads < self._most:
                    self._threads += 1
                    threading.Thread(target=self._serve, name="chainsync-rpc-request", daemon=True).start()
        return future

    def close(self) -> None:
        """Each thread ends once the requests queued before are done."""
        with self._lock:
            threads, self._threads = self._threads, self._most  # no new thread from now on
        for _ in range(threads):
            self._queue.put(None)

    def _serve(self) -> None:
        while self._run(self._queue.get()):
            pass

    def _run(self, item: tuple[Future, Callable[[], Any]] | None) -> bool:
        """Runs one request (False: the thread is to end). Its own frame, so that an idle thread refers to
        nothing of the request it ran: a loop's variables would keep the last answer (up to 16 MiB of parsed
        logs) alive while the thread waits for the next, in each of up to ``most`` threads."""
        if item is None:
            return False
        future, request = item
        if not future.set_running_or_notify_cancel():
            self._idle.release()
            return True
        try:
            outcome, settle = request(), future.set_result
        except BaseException as exc:  # handed to the waiting thread
            outcome, settle = exc, future.set_exception
        self._idle.release()  # idle before the waiting thread wakes: its next request finds this one
        settle(outcome)
        return True


class Endpoints:
    """Every endpoint of this process, by URL, and the one HTTP client (its connection pools) they share;
    made once by the server and handed to its jobs. (A client per job would cost each job its TLS context
    and its connections: about 80 ms to make here, and a handshake per connection.) And the threads a
    stoppable job's requests run in (``runners``), so that the job can stop without waiting for one."""

    def __init__(self, cap: int = DEFAULT_RPC_CONCURRENCY) -> None:
        self.cap = cap
        self._by_url: dict[str, Endpoint] = {}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._runners: RequestThreads | None = None

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
                self._client = httpx.Client(limits=limits)
            return self._client

    @property
    def runners(self) -> RequestThreads:
        with self._lock:
            if self._runners is None:
                self._runners = RequestThreads(RUNNERS)
            return self._runners

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._runners is not None:
                self._runners.close()
                self._runners = None

    def get(self, url: str) -> Endpoint:
        with self._lock:
            found = self._by_url.get(url)
            if found is None:
                found = self._by_url[url] = Endpoint(url, self.cap)
            return found

    def all(self) -> list[Endpoint]:
        with self._lock:
            return list(self._by_url.values())


SHARED = Endpoints()  # for a client made without one (tests, the bench); the server makes its own
