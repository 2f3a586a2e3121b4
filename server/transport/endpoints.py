"""The node endpoints of this process: how many requests each may have in flight.

One ``Endpoint`` per URL for the whole process, shared by every job that
talks to it, so that two jobs on one provider share its window rather than
each taking a window of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_WINDOW = 4  # requests in flight to one endpoint from this process


class Endpoint:
    """One node URL: a window of requests in flight."""

    def __init__(self, url: str, window: int = DEFAULT_WINDOW) -> None:
        self.url = url
        self.window = window
        self._slots = threading.BoundedSemaphore(window)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Held while one request is in flight (waits for a free slot)."""
        with self._slots:
            yield


_endpoints: dict[str, Endpoint] = {}
_lock = threading.Lock()


def endpoint(url: str) -> Endpoint:
    """The process's Endpoint for url."""
    with _lock:
        found = _endpoints.get(url)
        if found is None:
            found = _endpoints[url] = Endpoint(url)
        return found
