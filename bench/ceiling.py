"""The ceiling: a bare async client sending a job's own requests again, as fast as the network allows.

A chainsync job runs first with its node behind tests/remote_proxy.py, which
records the body of every request it forwards (a request it refused or
rate-limited is not recorded: that was the job's waste). The ceiling then
sends exactly those bodies again, parsing each answer's JSON and decoding
nothing, at each concurrency of ``CONCURRENCIES``; against a rate-limited
node it paces itself with a token bucket of the node's own rate and burst (it
knows the limit, so it is never refused). The fastest way to send it is
the ceiling: what this request set costs over this network. How to find the best
concurrency: try them all, keep the fastest (each run starts from a full
bucket). Each is tried in two orders, as the job sent them and longest first
(each request's time as the run at concurrency 1 measured it), so that a job
cannot make its ceiling slower by the order it sends in. The fastest
concurrency and order then run REPEATS times more, each right after a job
when the bench asks (``alternate_with``), and the ceiling is the median of
those: the statistic a job's time is (the median of the jobs run between
them). Alternating matters on a shared machine: its CPU's speed was seen to
change by half within seconds, and a ratio of two figures measured a minute
apart says as much about that as about the job.
The search's single fastest run is kept too (``fastest``): a minimum over
nine runs that differ by noise alone is lower than any typical run, and a
median of jobs against it reads lower than the job really is. A job's time
against the ceiling says how close the job comes to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

CONCURRENCIES = (1, 2, 4, 8, 16)
REPEATS = 5  # runs of the fastest concurrency and order, each after a job: the ceiling is their median, d the jobs'


@dataclass(frozen=True)
class Ceiling:
    seconds: float  # the median of REPEATS replays at the fastest concurrency and order (alternating with jobs)
    concurrency: int
    order: str  # "as sent" or "longest first"
    requests: int
    by_concurrency: dict[int, float]  # each concurrency's faster order, in the search
    fastest: float  # the search's fastest replay: a minimum over nine noisy runs, lower than a median


class Pacer:
    """A client-side token bucket: at most ``rate`` starts a second after a burst of ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.tokens, self.burst, self.at = rate, burst, burst, time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            for _ in range(100_000):
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


async def _replay(
    url: str, bodies: list[bytes], concurrency: int, pacer: Pacer | None, took: dict[int, float] | None = None
) -> float:
    """Sends bodies (in order, concurrency at once); with took, each one's time by its index."""
    queue = list(reversed(list(enumerate(bodies))))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            while queue:
                index, body = queue.pop()
                sent = time.perf_counter()
                for _ in range(20):  # a 429 (not expected when paced) is waited out as it asks
                    if pacer:
                        await pacer.take()
                    answer = await client.post(url, content=body, headers={"content-type": "application/json"})
                    if answer.status_code != 429:
                        break
                    await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
                answer.raise_for_status()
                orjson.loads(answer.content)
                if took is not None:
                    took[index] = time.perf_counter() - sent

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def best(
    url: str,
    bodies: list[bytes],
    *,
    rate: float | None = None,
    before_each: Callable[[], object] | None = None,
    alternate_with: Callable[[], object] | None = None,
) -> Ceiling:
    """The replay of bodies to url at its fastest concurrency and order (paced at rate, burst one second's
    worth): the median of REPEATS runs of it after the search, each run after a call of alternate_with (the
    bench runs a job there)."""
    tries: dict[tuple[int, str], float] = {}
    took: dict[int, float] = {}

    def replay(order: list[bytes], concurrency: int, record: dict[int, float] | None = None) -> float:
        if before_each is not None:
            before_each()  # e.g. refill the proxy's bucket
        pacer = Pacer(rate, rate) if rate else None
        return asyncio.run(_replay(url, order, concurrency, pacer, record))

    for concurrency in CONCURRENCIES:
        tries[(concurrency, "as sent")] = replay(bodies, concurrency, took if concurrency == 1 else None)
    orders = {"as sent": bodies, "longest first": [bodies[i] for i in sorted(took, key=took.__getitem__, reverse=True)]}
    for concurrency in CONCURRENCIES[1:]:
        tries[(concurrency, "longest first")] = replay(orders["longest first"], concurrency)
    concurrency, order = min(tries, key=tries.__getitem__)
    again = []
    for _ in range(REPEATS):
        if alternate_with is not None:
            alternate_with()
        again.append(replay(orders[order], concurrency))
    again.sort()
    by_concurrency = {c: min(t for (tried, _), t in tries.items() if tried == c) for c in CONCURRENCIES}
    return Ceiling(again[REPEATS // 2], concurrency, order, len(bodies), by_concurrency, tries[(concurrency, order)])
