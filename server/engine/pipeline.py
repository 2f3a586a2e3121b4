"""Several requests in flight, results in order: the engine's one way of doing work concurrently.

``in_order`` submits work items to a thread pool, at most ``ahead`` at once,
and hands back their results in the order the items came, so that whoever
consumes them (the log scan saving its checkpoint, the getter reads saving
pages) moves only over contiguous finished work. Items are drawn lazily: the
next one is made when a slot frees, with what is known by then (the log scan
sizes its next chunk from the answers so far). How many requests really fly
at once is the endpoint's window (server/transport/endpoints.py); ``ahead``
only bounds the threads and the memory of answers waiting their turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from typing import Any

Work = Callable[[], Any]


def in_order(pool: ThreadPoolExecutor, items: Iterable[tuple[Work, ...]], ahead: int) -> Iterator[tuple[Any, ...]]:
    """Runs each item's works concurrently and yields each item's results, in the items' order.

    A failed work raises from here when its item's turn comes; the items not yet handed back are then
    cancelled (those already running finish on their own: their requests look at the job's stop token).
    """
    pending: deque[list[Future]] = deque()
    source = iter(items)
    try:
        while True:
            while len(pending) < ahead:
                item = next(source, None)
                if item is None:
                    break
                # copy_context: lines logged in the pool's threads carry the job's log context too
                pending.append([pool.submit(copy_context().run, work) for work in item])
            if not pending:
                return
            yield tuple(future.result() for future in pending.popleft())
    finally:
        for futures in pending:
            for future in futures:
                future.cancel()


def all_of(pool: ThreadPoolExecutor, works: list[Work], ahead: int) -> list[Any]:
    """Every work's result, in order, at most ``ahead`` running at once."""
    return [result for (result,) in in_order(pool, ((work,) for work in works), ahead)]
