"""The status route's memory: the answer for each job polled through this bridge, kept current by WatchJob.

Every client polls its job's status every 2 s, and one gRPC call costs the
bridge more CPU than the rest of the request (grpc.aio: about 400 us a call
here, against about 300 us for the whole of /healthz; docs/load.md). So:

- the first poll of a job with a given ``Authorization`` value asks the
  server (GetJob: the server checks the token and that the job is the
  caller's), and the answer is kept, rendered once, under (job id,
  Authorization value);
- while the job is live, one WatchJob stream per such pair, opened with the
  same Authorization, replaces the answer with each new version as the
  server pushes it (the server's watch hub reads each change as it commits);
- later polls with the same pair are answered from memory.

What it promises (docs/rest-api.md, "Status from memory"):

- a live job's answer trails the server's by the stream's delivery (a few
  milliseconds on one machine);
- a finished job's answer is reused for ``FINISHED_FRESH_S``, then asked
  again: a job deleted or expired through another bridge still shows for at
  most that long; one cancelled or deleted through this bridge is asked again
  at once;
- a failed or ended stream (server restarted, job deleted, token no longer
  accepted) drops the pair, so the next poll asks the server;
- a pair nobody polled for ``IDLE_S`` is dropped and its stream closed; at
  most ``MAX_PAIRS`` are held (beyond that, polls go to the server).

A different Authorization value never reads another's answer: the pair is
the key. Nothing here raises into a request; the server's errors reach the
client through the GetJob that a poll makes when nothing usable is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import grpc
import orjson
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from rest_bridge.convert import job_json
from server.states import TERMINAL_ENUMS

log = logging.getLogger("chainsync.bridge")

FINISHED_FRESH_S = 1.0  # a finished job's answer is asked again after this long (the replicas' bound, too)
IDLE_S = 30.0  # a pair not polled for this long is dropped (15 polls missed at the spec's 2 s)
MAX_PAIRS = 10_000
SWEEP_S = 5.0

Pair = tuple[str, str]  # (job id, Authorization value or "")


def status_body(job: jobs_pb2.Job) -> bytes:
    """The status route's JSON body for this job: ``{"success": true, "job": {...}}``."""
    return orjson.dumps({"success": True, "job": job_json(job)})


@dataclass
class Answer:
    body: bytes
    version: int
    finished: bool
    fresh_until: float  # monotonic; a live answer with a stream is fresh as long as the stream runs
    polled_at: float
    stream: asyncio.Task[None] | None = None


class StatusMirror:
    def __init__(self, stub: jobs_pb2_grpc.JobServiceStub) -> None:
        self._stub = stub
        self._answers: dict[Pair, Answer] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def answer(self, job_id: str, authorization: str) -> bytes | None:
        """The held answer for this pair while it is current, else None (then ask the server and ``keep``)."""
        answer = self._answers.get((job_id, authorization))
        if answer is None:
            return None
        now = time.monotonic()
        if answer.stream is None and now > answer.fresh_until:
            return None
        answer.polled_at = now
        return answer.body

    def keep(self, job: jobs_pb2.Job, authorization: str, metadata: tuple[tuple[str, str], ...]) -> bytes:
        """Holds the server's answer for this pair (unless a newer version is held) and returns its body;
        a live job gets a WatchJob stream (one per pair) that keeps the answer current."""
        pair, now = (job.id, authorization), time.monotonic()
        held = self._answers.get(pair)
        if held is not None and held.version >= job.version:
            held.polled_at = now
            if held.finished:
                held.fresh_until = now + FINISHED_FRESH_S
            return held.body
        body = status_body(job)
        if held is None and len(self._answers) >= MAX_PAIRS:
            return body
        finished = job.state in TERMINAL_ENUMS
        answer = Answer(body, job.version, finished, now + FINISHED_FRESH_S, now)
        if held is not None and not finished:
            answer.stream = held.stream
        self._answers[pair] = answer
        if held is not None and held.stream is not None and finished:
            held.stream.cancel()
        if not finished and answer.stream is None:
            answer.stream = asyncio.create_task(self._follow(pair, job.version, metadata))
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        return body

    def forget(self, job_id: str) -> None:
        """Drops every pair of this job (it was cancelled or deleted through this bridge)."""
        for pair in [p for p in self._answers if p[0] == job_id]:
            self._drop(pair)

    async def close(self) -> None:
        tasks = [a.stream for a in self._answers.values() if a.stream is not None]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._answers.clear()

    def _drop(self, pair: Pair) -> None:
        answer = self._answers.pop(pair, None)
        if answer is not None and answer.stream is not None and answer.stream is not asyncio.current_task():
            answer.stream.cancel()

    async def _follow(self, pair: Pair, after: int, metadata: tuple[tuple[str, str], ...]) -> None:
        """Replaces the pair's answer with each version the server pushes, until the job ends."""
        call = self._stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=pair[0], after_sequence=after), metadata=metadata)
        ended = False
        try:
            async for event in call:
                answer = self._answers.get(pair)
                if answer is None or answer.stream is not asyncio.current_task():
                    return  # dropped, or replaced by a newer stream
                if event.job.version > answer.version:
                    answer.body, answer.version = status_body(event.job), event.job.version
                if event.job.state in TERMINAL_ENUMS:
                    answer.finished, answer.fresh_until, answer.stream = True, time.monotonic() + FINISHED_FRESH_S, None
                    ended = True
                    return
        except grpc.aio.AioRpcError as exc:
            log.debug("status mirror: watching %s ended with %s", pair[0], exc.code().name)
        finally:
            call.cancel()
            answer = self._answers.get(pair)
            if not ended and answer is not None and answer.stream is asyncio.current_task():
                self._drop(pair)  # the stream failed or ended early: the next poll asks the server

    async def _sweep(self) -> None:
        """Drops the pairs nobody polls any more, and the finished answers past their freshness."""
        for _ in range(10**9):  # for the app's life; bounded all the same
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for pair, answer in list(self._answers.items()):
                if now - answer.polled_at > IDLE_S or (answer.stream is None and now > answer.fresh_until):
                    self._drop(pair)
