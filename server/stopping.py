"""Stopping a job: one token that says whether, and why, its work must stop.

A running job stops for one of four reasons: ``cancelled`` (a client asked),
``timeout`` (its deadline passed), ``shutdown`` (the server is stopping: the
job goes back to pending and resumes from its checkpoint) or ``lost`` (its
lease expired and another worker took it over). The runner owns the token;
the transport, the engine and the IPFS step only look at it, and sleep on it
so that a stop wakes them at once.

A stop is not an error: ``raise_if_stopped`` unwinds the job's stack with
``Stopped``, a control signal like asyncio.CancelledError (a BaseException,
so no ``except Exception`` on the way turns it into a failure), and the job
runner alone decides what each reason means for the job's state.
"""

from __future__ import annotations

import threading
import time

CANCELLED, TIMEOUT, SHUTDOWN, LOST = "cancelled", "timeout", "shutdown", "lost"


class Stopped(BaseException):
    """The job must stop; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopToken:
    """Whether a job must stop: asked explicitly (cancel, lease lost), by its deadline, or by a server shutdown."""

    def __init__(self, *, deadline: float | None = None, shutdown: threading.Event | None = None) -> None:
        self.deadline = deadline  # wall clock (time.time()); None: no timeout
        self._shutdown = shutdown
        self._asked: str | None = None
        self._wake = threading.Event()

    def stop(self, reason: str) -> None:
        """Asks the work to stop (the first reason given is kept)."""
        if self._asked is None:
            self._asked = reason
        self._wake.set()

    @property
    def reason(self) -> str | None:
        if self._asked is not None:
            return self._asked
        if self.deadline is not None and time.time() > self.deadline:
            return TIMEOUT
        if self._shutdown is not None and self._shutdown.is_set():
            return SHUTDOWN
        return None

    def raise_if_stopped(self) -> None:
        reason = self.reason
        if reason is not None:
            raise Stopped(reason)

    def sleep(self, seconds: float) -> None:
        """Sleeps, or raises Stopped as soon as the work must stop (within 0.1 s of a deadline or shutdown)."""
        end = time.monotonic() + seconds
        while True:
            self.raise_if_stopped()
            left = end - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(0.1, left))


NEVER = StopToken()  # for work that nothing stops (tests, the bench, the probe at start)
