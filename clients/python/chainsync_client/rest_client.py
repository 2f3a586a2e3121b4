"""RestClient: the same API as GrpcClient, over the REST bridge's JSON (watch over server-sent events)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from chainsync_client._base import JOB_STATES, JOB_TYPES, MAX_RECONNECTS, Client, backoff, check_choice, cursor_id
from chainsync_client.errors import ChainsyncError, ServiceUnavailable, WaitTimeout, error_for
from chainsync_client.models import Cursor, Job, JobEvent, JobPage, SyncResult, record_from_json

SSE_READ_TIMEOUT_S = 90.0  # the bridge pings every 15 s: this much silence means the connection is dead


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str, str | None]]:
    """(event, data, id) for each event of a text/event-stream; ("ping", "", None) for each comment line."""
    event, data, event_id = "message", [], None
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            yield "ping", "", None
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


class RestClient(Client):
    """``RestClient("http://127.0.0.1:8080", token=...)``; the token defaults to CHAINSYNC_API_TOKEN.
    ``timeout`` bounds each request, in seconds."""

    def __init__(self, base_url: str | None = None, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = (base_url or f"http://{os.environ.get('CHAINSYNC_HTTP_ADDR') or '127.0.0.1:8080'}").rstrip("/")
        token = token if token is not None else os.environ.get("CHAINSYNC_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _unreachable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the chainsync REST bridge at {self.base_url} is unreachable ({exc})", "BRIDGE_UNAVAILABLE"
        )

    @staticmethod
    def _error(response: httpx.Response) -> ChainsyncError:
        try:
            body = response.json()
            return error_for(body["error"], body.get("code"), body.get("details"), response.status_code)
        except (ValueError, KeyError, TypeError):
            return error_for(f"HTTP {response.status_code}: {response.text[:200]}", None, None, response.status_code)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response.json()

    def start_sync(
        self,
        blocks_back: int | None = None,
        *,
        full: bool = False,
        type: str = "blockchain_sync",
        request_id: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        incremental: bool = False,
        confirmations: int | None = None,
        timeout_seconds: int | None = None,
        after: str | Cursor | None = None,
    ) -> Job:
        body: dict[str, Any] = {"isFullSync": full, "type": type, "incremental": incremental}
        for name, value in [
            ("after", cursor_id(after)),
            ("blocksBack", blocks_back),
            ("requestId", request_id),
            ("fromBlock", from_block),
            ("toBlock", to_block),
            ("confirmations", confirmations),
            ("timeoutSeconds", timeout_seconds),
        ]:
            if value is not None:
                body[name] = value
        return Job.from_json(self._request("POST", "/api/blockchain/sync", json=body)["job"])

    def status(self, job_id: str) -> Job:
        return Job.from_json(self._request("GET", f"/api/blockchain/sync/status/{job_id}")["job"])

    def result(self, job_id: str, *, page_size: int | None = None, page_token: str | None = None) -> SyncResult:
        params = {k: v for k, v in [("pageSize", page_size), ("pageToken", page_token)] if v}
        return SyncResult.from_json(
            job_id, self._request("GET", f"/api/blockchain/sync/result/{job_id}", params=params)
        )

    def iter_records(self, job_id: str, page_size: int = 500) -> Iterator[tuple[str, dict[str, Any]]]:
        """Reads the NDJSON stream of the result: one record per line, never the whole result at once."""
        try:
            with self._http.stream(
                "GET",
                f"/api/blockchain/sync/result/{job_id}",
                params={"pageSize": page_size},
                headers={"Accept": "application/x-ndjson"},
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                for line in response.iter_lines():
                    if not line:
                        continue
                    record = json.loads(line)
                    kind = record.pop("kind")
                    if kind == "summary":
                        return
                    if kind == "error":
                        raise error_for(record["error"], record.get("code"), record.get("details"), None)
                    yield kind, record_from_json(record)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        raise ChainsyncError(f"the record stream of job {job_id} ended before its summary", "STREAM_TRUNCATED")

    def watch(self, job_id: str, *, after_sequence: int = 0, timeout: float | None = None) -> Iterator[JobEvent]:
        """Server-sent events; after a dropped connection it reconnects with Last-Event-ID (nothing is missed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last, failures = after_sequence, 0

        def timed_out() -> WaitTimeout:
            return WaitTimeout(f"job {job_id} did not end within {timeout} s", "WAIT_TIMEOUT", {"jobId": job_id})

        for _ in range(1_000_000):  # bounded; each round either brings events or counts as a failure
            read_s = (
                SSE_READ_TIMEOUT_S
                if deadline is None
                else max(0.001, min(SSE_READ_TIMEOUT_S, deadline - time.monotonic()))
            )
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(last)} if last else {})}
            try:
                with self._http.stream(
                    "GET",
                    f"/api/blockchain/sync/events/{job_id}",
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=read_s),
                ) as response:
                    if response.status_code == 204:
                        return  # the job ended and its last event was seen
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response)
                    for name, data, event_id in parse_sse(response.iter_lines()):
                        if deadline is not None and time.monotonic() > deadline:
                            raise timed_out()
                        if name == "job" and event_id:
                            failures, last = 0, int(event_id)
                            yield JobEvent(last, Job.from_json(json.loads(data)))
                        elif name == "end":
                            return
                        elif name == "error":
                            body = json.loads(data)
                            raise error_for(body["error"], body.get("code"), body.get("details"), None)
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise timed_out() from None
                if last == after_sequence:
                    raise self._unreachable(exc) from None
            failures += 1  # the stream broke or ended early: resume after `last`
            if failures > MAX_RECONNECTS:
                raise ServiceUnavailable(
                    f"lost the event stream of job {job_id} at {self.base_url} and could not resume it",
                    "BRIDGE_UNAVAILABLE",
                    {"jobId": job_id},
                )
            time.sleep(backoff(failures))

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(self._request("POST", f"/jobs/{job_id}:cancel")["job"])

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 20,
        page: int | None = None,
        page_token: str | None = None,
    ) -> JobPage:
        check_choice("status", status, JOB_STATES)
        check_choice("type", type, JOB_TYPES)
        params = {
            k: v
            for k, v in [
                ("status", status),
                ("type", type),
                ("limit", page_size),
                ("page", page),
                ("pageToken", page_token),
            ]
            if v
        }
        body = self._request("GET", "/jobs", params=params)
        return JobPage([Job.from_json(j) for j in body["jobs"]], body["pagination"]["total"], body.get("nextPageToken"))

    def close(self) -> None:
        self._http.close()
