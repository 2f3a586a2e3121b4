"""The one retry policy: what counts as transient, how long to wait, and when to give up.

Every caller that retries (the RPC transport, the IPFS gateways, the sync's
re-fetch of malformed answers, the PostgreSQL connector) describes its budget
with a ``RetryPolicy`` and runs its call through ``retry_call``; none has a
loop of its own. Built on tenacity (docs/decisions.md says why): full-jitter
exponential backoff, a budget in tries and/or seconds, a server's
``Retry-After`` honoured, and sleeps that a stop token cuts short.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
    stop_never,
)

T = TypeVar("T")


def transient_http_status(status: int) -> bool:
    """An HTTP answer worth trying again: rate-limited (429) or a server error (5xx)."""
    return status == 429 or status >= 500


def retry_after_s(value: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header given in seconds (an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


class Transient(Exception):
    """A failure worth trying again. ``retry_after_s``: how long the other side asked us to wait."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GaveUp(Exception):
    """Every try failed; ``tries`` were made and ``last`` is the last failure."""

    def __init__(self, tries: int, last: BaseException) -> None:
        super().__init__(f"gave up after {tries} tries: {last}")
        self.tries = tries
        self.last = last


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int | None = None  # at most this many tries; None: the budget alone decides
    budget_s: float | None = None  # never sleep past this many seconds after the first try
    base_delay_s: float = 0.1  # the first backoff's cap; doubles after each round
    max_delay_s: float = 4.0
    jitter: bool = True  # full jitter: a random wait in [0, backoff] (AWS's "exponential backoff and jitter")
    max_retry_after_s: float = 30.0  # a Retry-After longer than this is cut to it
    round_size: int = 1  # tries in one round (one per RPC URL): the next URL is tried at once, backoff after a round

    def backoff_s(self, round_number: int) -> float:
        """The wait after the ``round_number``-th full round (0-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2**round_number)
        return random.uniform(0, cap) if self.jitter else cap

    def wait_s(self, tries: int, error: BaseException | None) -> float:
        """How long to wait after ``tries`` tries whose last failed with ``error``."""
        wait = self.backoff_s(tries // self.round_size - 1) if tries % self.round_size == 0 else 0.0
        asked = getattr(error, "retry_after_s", None)
        if asked:
            wait = max(wait, min(asked, self.max_retry_after_s))
        return wait


def retry_call(
    call: Callable[[int], T],
    policy: RetryPolicy,
    *,
    transient: Callable[[BaseException], bool] = lambda e: isinstance(e, Transient),
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """``call(try_index)`` until it returns, raises something not transient, or the policy gives up (GaveUp).

    ``sleep`` waits between tries (a StopToken's sleep, to stop at once); ``on_retry(tries, error, wait_s)``
    runs before each wait (logs, metrics).
    """
    stops = []
    if policy.attempts is not None:
        stops.append(stop_after_attempt(policy.attempts))
    if policy.budget_s is not None:
        stops.append(stop_before_delay(policy.budget_s))

    def wait(state: RetryCallState) -> float:
        return policy.wait_s(state.attempt_number, state.outcome.exception() if state.outcome else None)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    retrying = Retrying(
        stop=stop_any(*stops) if stops else stop_never,
        wait=wait,
        retry=retry_if_exception(transient),
        sleep=sleep,
        before_sleep=before_sleep,
    )
    tries = 0
    try:
        for attempt in retrying:
            with attempt:
                tries = attempt.retry_state.attempt_number
                return call(tries - 1)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise GaveUp(tries, last) from last
    raise AssertionError("unreachable")
