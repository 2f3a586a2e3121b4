"""Fan-out of job events to WatchJob streams.

However many clients watch a job, one coroutine per watched job reads its new
events from the store and wakes the watchers, which read them from memory. It
reads when the job cache tells of a new version (``nudge``: this server's own
writes at once, another replica's within the cache's bound) and, should a
notice be missed, every ``poll_s`` regardless. Watchers cost no thread and no store query each; a
watcher that resumes from an old sequence number catches up from the store
once, then joins the shared feed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from server.jobs.store import JobStore
from server.states import TERMINAL

Event = tuple[int, float, dict[str, Any]]  # (sequence, time, job snapshot)
KEEP_EVENTS = 256  # recent events held in memory per watched job


@dataclass
class _Feed:
    last: int  # last sequence read from the store
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set by nudge: read the store now
    watchers: int = 0
    finished: bool = False
    gone: bool = False  # the job was deleted


class WatchHub:
    def __init__(self, store: JobStore, poll_s: float = 0.2) -> None:
        self.store = store
        self.poll_s = poll_s
        self._feeds: dict[str, _Feed] = {}

    def nudge(self, job_id: str) -> None:
        """The job has a new version (or is gone): its feed reads the store now. Safe from any thread."""
        feed = self._feeds.get(job_id)
        if feed is not None:
            try:
                feed.loop.call_soon_threadsafe(feed.wake.set)
            except RuntimeError:  # the loop has closed (the server is stopping)
                pass

    async def follow(self, job_id: str, after: int) -> AsyncIterator[Event]:
        """Events of job_id after sequence ``after`` until the job ends; raises LookupError if it is deleted."""
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = _Feed(last=after)
            feed.events = await asyncio.to_thread(self.store.events, job_id, after)
            if feed.events:
                feed.last = feed.events[-1][0]
            asyncio.create_task(self._poll(job_id, feed))
        feed.watchers += 1
        try:
            last = after
            while True:
                oldest = feed.events[0][0] if feed.events else feed.last + 1
                if last + 1 < oldest:  # fell behind the in-memory tail: catch up from the store
                    for event in await asyncio.to_thread(self.store.events, job_id, last):
                        if event[0] >= oldest:
                            break
                        last = event[0]
                        yield event
                for event in [e for e in feed.events if e[0] > last]:
                    last = event[0]
                    yield event
                    if _finished(event):
                        return
                if feed.gone:
                    raise LookupError(job_id)
                if feed.finished and last >= feed.last:
                    return
                async with feed.changed:
                    if feed.last <= last and not feed.gone:
                        await feed.changed.wait()
        finally:
            feed.watchers -= 1

    async def _poll(self, job_id: str, feed: _Feed) -> None:
        try:
            while True:
                try:
                    await asyncio.wait_for(feed.wake.wait(), self.poll_s)
                except TimeoutError:
                    pass
                feed.wake.clear()
                new = await asyncio.to_thread(self.store.events, job_id, feed.last)
                if not new and await asyncio.to_thread(self.store.get, job_id) is None:
                    feed.gone = True
                if new:
                    feed.events = (feed.events + new)[-KEEP_EVENTS:]
                    feed.last = new[-1][0]
                    feed.finished = _finished(new[-1])
                if new or feed.gone:
                    async with feed.changed:
                        feed.changed.notify_all()
                if feed.finished or feed.gone or feed.watchers == 0:
                    break
        finally:
            self._feeds.pop(job_id, None)
            async with feed.changed:
                feed.changed.notify_all()


def _finished(event: Event) -> bool:
    return event[2]["state"] in TERMINAL
