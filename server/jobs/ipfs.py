"""IPFS content behind the records' ``*Cid`` fields: CIDs, gateways, verification, and the job step.

Owns:

- which fields hold CIDs (``CID_FIELDS``); a field that ``server.jobs.cid.parse_cid``
  does not read as a CID (bare or ``ipfs://<cid>`` / ``/ipfs/<cid>``) is never fetched;
- fetching ``GET {gateway}/ipfs/{cid}`` (``Gateways``): one httpx client, at
  most ``concurrency`` requests in flight for the whole server, a timeout per
  request, retries with backoff on 429, 5xx and connection errors, the next
  gateway when one fails, a size cap, UTF-8 text only;
- verifying content: a raw sha2-256 CID's content (``bafkrei…``) must hash to
  its digest; a dag-pb sha2-256 CID (``Qm…``, ``bafybei…``) is fetched as raw
  blocks (``?format=raw``), each checked against its CID, and its UnixFS file
  decoded from them; other CIDs are trusted to the gateway (docs/ipfs.md);
- the job step (``resolve_job_content``): every CID of a job's records, from the
  store's cache (keyed by CID: content under a CID never changes) or the
  gateways, written beside the CID in each record; a field that cannot be
  fetched is listed in the record's ``unresolved`` with a reason, never filled
  with placeholder text. Only verified fetches are cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from server.jobs.cid import DAG_PB_CODEC, RAW_CODEC, Cid, parse_cid, unixfs_file, verify
from server.jobs.store import ContentCache
from server.kinds import KINDS
from server.retry import GaveUp, RetryPolicy, retry_after_s, retry_call, transient_http_status
from server.stopping import LOST, Stopped, StopToken

# Record kind -> (CID field -> resolved text field), as server/kinds.py declares them.
CID_FIELDS: dict[str, dict[str, str]] = {kind.name: kind.content_fields for kind in KINDS}

# Why a field stays unresolved. The first four are about the content a gateway
# gave; "not_found" and "unavailable" mean no gateway gave any.
REASONS = ("not_a_cid", "hash_mismatch", "too_large", "not_text", "not_found", "unavailable")
_PRIORITY = ("hash_mismatch", "too_large", "not_text", "unavailable", "not_found")  # reported when gateways differ

MAX_DEPTH = 8  # of a UnixFS file's tree of blocks
MAX_BLOCKS = 1024  # of one file (each is one request)
PAGE = 500  # records rewritten, and CIDs looked up in the cache, per store call


@dataclass(frozen=True)
class IpfsSettings:
    gateways: tuple[str, ...]  # base URLs, tried in order
    concurrency: int = 8  # requests in flight, for the whole server
    timeout_s: float = 10.0  # per request
    attempts: int = 3  # per gateway, on 429, 5xx and connection errors
    backoff_s: float = 0.25  # before the second attempt; doubles after
    max_retry_after_s: float = 5.0  # a 429's Retry-After is honoured up to this
    max_bytes: int = 1024 * 1024
    batch: int = 64  # CIDs fetched between two cancellation checks and cache writes
    # A few CIDs no one has fail in a row on a healthy gateway too (ipfs.io answers 504 for them), so this
    # is well above a handful: a dead gateway reaches it within a few seconds all the same.
    down_after: int = 20  # CIDs in a row a gateway could not serve (after retries) before it is skipped...
    down_for_s: float = 30.0  # ...for this long; then it is tried again


@dataclass(frozen=True)
class Fetched:
    cid: str
    content: str | None = None  # verified UTF-8 text
    reason: str | None = None  # one of REASONS (or "stopped": the job is stopping), when content is None


class _Failure(Exception):
    def __init__(self, reason: str, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after_s = retry_after


class Gateways:
    """Fetches CIDs from the configured gateways with bounded concurrency; thread-safe, one per server."""

    def __init__(self, settings: IpfsSettings, client: httpx.Client | None = None) -> None:
        if not settings.gateways:
            raise ValueError("CHAINSYNC_IPFS_GATEWAY: no gateway URL given")
        self.settings = settings
        self.client = client or httpx.Client(
            timeout=settings.timeout_s,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="ipfs")
        # A gateway that is down would cost every CID its retries: after down_after failures in a row
        # it is skipped (the CID's reason is "unavailable") until down_for_s have passed.
        self._lock = threading.Lock()
        self._failures_in_a_row = dict.fromkeys(settings.gateways, 0)
        self._retry = RetryPolicy(
            attempts=settings.attempts,
            base_delay_s=settings.backoff_s,
            max_delay_s=settings.backoff_s * 2**settings.attempts,
            jitter=False,
            max_retry_after_s=settings.max_retry_after_s,
        )
        self._down_until = dict.fromkeys(settings.gateways, 0.0)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def fetch_many(self, cids: Iterable[Cid], stopping: Callable[[], bool] = lambda: False) -> list[Fetched]:
        futures = [self._pool.submit(self.fetch, cid, stopping) for cid in cids]
        return [f.result() for f in futures]

    def fetch(self, cid: Cid, stopping: Callable[[], bool] = lambda: False) -> Fetched:
        """The first gateway's verified text; else the most telling failure among the gateways."""
        failures = []
        for gateway in self.settings.gateways:
            try:
                return Fetched(cid.text, content=self._from(gateway, cid, stopping))
            except _Failure as failure:
                if failure.reason == "stopped":
                    return Fetched(cid.text, reason="stopped")
                failures.append(failure.reason)
        return Fetched(cid.text, reason=next(r for r in _PRIORITY if r in failures))

    def is_down(self, gateway: str) -> bool:
        with self._lock:
            return time.monotonic() < self._down_until[gateway]

    def _served(self, gateway: str, ok: bool) -> None:
        with self._lock:
            self._failures_in_a_row[gateway] = 0 if ok else self._failures_in_a_row[gateway] + 1
            if self._failures_in_a_row[gateway] >= self.settings.down_after:
                self._down_until[gateway] = time.monotonic() + self.settings.down_for_s

    def _from(self, gateway: str, cid: Cid, stopping: Callable[[], bool]) -> str:
        """The CID's text from this gateway, verified where the CID allows it."""
        if cid.verifiable and cid.codec == DAG_PB_CODEC:
            body = bytearray()
            self._file(gateway, cid, stopping, body, [0])
        else:  # raw: the content is the block; other codecs and hashes: trusted to the gateway
            body = bytearray(self._fetch(gateway, cid.text, cid, stopping, raw=False))
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise _Failure("not_text", retry=False) from None

    def _file(
        self, gateway: str, cid: Cid, stopping: Callable[[], bool], out: bytearray, blocks: list[int], depth: int = 0
    ) -> None:
        """Appends the bytes of the UnixFS file under cid, block by verified block (?format=raw).

        blocks: [how many blocks of this file were fetched]; it and the depth are bounded.
        """
        blocks[0] += 1
        if depth > MAX_DEPTH or blocks[0] > MAX_BLOCKS:
            raise _Failure("not_text", retry=False)
        block = self._fetch(gateway, cid.text or cid.as_v1(), cid, stopping, raw=True)
        if cid.codec == RAW_CODEC:
            out += block
        elif cid.codec == DAG_PB_CODEC:
            try:
                data, children, size = unixfs_file(block)
            except ValueError:
                raise _Failure("not_text", retry=False) from None
            if size is not None and size > self.settings.max_bytes:
                raise _Failure("too_large", retry=False)
            out += data
            for child in children:
                if not child.verifiable:
                    raise _Failure("not_text", retry=False)
                self._file(gateway, child, stopping, out, blocks, depth + 1)
        else:
            raise _Failure("not_text", retry=False)
        if len(out) > self.settings.max_bytes:
            raise _Failure("too_large", retry=False)

    def _fetch(self, gateway: str, name: str, cid: Cid, stopping: Callable[[], bool], *, raw: bool) -> bytes:
        """The body of GET {gateway}/ipfs/{name} (?format=raw: the block), retried, its hash checked."""
        url = f"{gateway.rstrip('/')}/ipfs/{name}" + ("?format=raw" if raw else "")

        def attempt(_: int) -> bytes:
            if stopping():
                raise _Failure("stopped", retry=False)
            if self.is_down(gateway):
                raise _Failure("unavailable", retry=False)
            body = self._get(url)
            if not verify(cid, body):
                raise _Failure("hash_mismatch", retry=False)
            return body

        try:
            body = retry_call(
                attempt,
                self._retry,
                transient=lambda e: isinstance(e, _Failure) and e.retry,
                sleep=lambda seconds: _sleep_unless(stopping, seconds),
            )
        except (_Failure, GaveUp) as exc:
            failure = exc.last if isinstance(exc, GaveUp) else exc
            self._served(gateway, ok=failure.reason != "unavailable")  # any other answer: it is up
            raise _Failure(failure.reason, retry=False) from None
        self._served(gateway, ok=True)
        return body

    def _get(self, url: str) -> bytes:
        s = self.settings
        try:
            with self.client.stream("GET", url) as response:
                if transient_http_status(response.status_code):
                    raise _Failure(
                        "unavailable", retry=True, retry_after=retry_after_s(response.headers.get("retry-after"))
                    )
                if response.status_code in (404, 410):
                    raise _Failure("not_found", retry=False)
                if response.status_code != 200:
                    raise _Failure("unavailable", retry=False)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > s.max_bytes:
                    raise _Failure("too_large", retry=False)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > s.max_bytes:
                        raise _Failure("too_large", retry=False)
        except httpx.HTTPError:  # connection refused or reset, timeouts, protocol errors
            raise _Failure("unavailable", retry=True) from None
        return bytes(body)


def _sleep_unless(stopping: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stopping():
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


# -- the job step ------------------------------------------------------------


@dataclass
class ContentStats:
    cids: int = 0  # distinct CIDs in the job's records
    cached: int = 0  # served from the store's cache
    fetched: int = 0  # fetched and verified now
    failed: int = 0  # distinct CIDs no gateway gave
    unresolved_fields: int = 0  # record fields left unresolved (not a CID, or failed)

    def as_dict(self) -> dict[str, int]:
        """Under the protobuf JobStats field names (server/engine/stats.py)."""
        return {
            "content_cids": self.cids,
            "content_cached": self.cached,
            "content_fetched": self.fetched,
            "content_failed": self.failed,
            "content_unresolved": self.unresolved_fields,
        }


class ContentStore(Protocol):
    """What the step needs from the job store (server.jobs.store.JobStore has it)."""

    def records(self, job_id: str, kind: str) -> Iterable[dict[str, Any]]: ...

    def replace_records(
        self, job_id: str, kind: str, records: list[dict[str, Any]], owner: str | None = None
    ) -> bool: ...


def with_content(
    kind: str, record: dict[str, Any], contents: dict[str, str], failures: dict[str, str]
) -> dict[str, Any]:
    """The record with each CID field's text beside it, or the field listed in ``unresolved``.

    contents: CID -> text; failures: CID -> reason. An empty field has nothing to resolve.
    """
    out = {k: v for k, v in record.items() if k != "unresolved" and k not in CID_FIELDS[kind].values()}
    unresolved = []
    for cid_field, text_field in CID_FIELDS[kind].items():
        value = record.get(cid_field) or ""
        if not value:
            continue
        cid = parse_cid(value)
        if cid is None:
            unresolved.append({"field": cid_field, "cid": value, "reason": "not_a_cid"})
        elif cid.text in contents:
            out[text_field] = contents[cid.text]
        else:
            unresolved.append({"field": cid_field, "cid": value, "reason": failures.get(cid.text, "unavailable")})
    out["unresolved"] = unresolved
    return out


def resolve_job_content(
    store: ContentStore,
    cache: ContentCache,
    job_id: str,
    kinds: list[str],
    gateways: Gateways,
    *,
    owner: str | None,
    stop: StopToken,
    progress: Callable[[int, int, ContentStats], None],
    out_of_time: Callable[[], bool] = lambda: False,
) -> ContentStats:
    """Resolves every CID field of the job's records of these kinds and rewrites the records.

    The stop token is looked at between batches (Stopped); progress(done, total, stats)
    after each batch. Once out_of_time(), nothing more is fetched: the CIDs left are
    "unavailable" (a later job fetches them) and the records are written as they are.
    Raises Stopped(LOST) when the store no longer lets owner write.
    """
    stats = ContentStats()
    wanted: dict[str, Cid] = {}
    for kind in kinds:
        for record in store.records(job_id, kind):
            for cid_field in CID_FIELDS[kind]:
                cid = parse_cid(record.get(cid_field) or "")
                if cid is not None:
                    wanted.setdefault(cid.text, cid)
    stats.cids = len(wanted)
    # Texts are read back from the cache a page of records at a time, never all held at once.
    names = sorted(wanted)
    cached: set[str] = set()
    for start in range(0, len(names), PAGE):
        cached.update(cache.get(names[start : start + PAGE]))
    stats.cached = len(cached)
    missing = [wanted[c] for c in names if c not in cached]
    failures: dict[str, str] = {}
    progress(stats.cached, stats.cids, stats)
    batch = gateways.settings.batch
    for start in range(0, len(missing), batch):
        stop.raise_if_stopped()
        if out_of_time():
            failures.update(dict.fromkeys((c.text for c in missing[start:]), "unavailable"))
            stats.failed += len(missing) - start
            break
        fetched = gateways.fetch_many(missing[start : start + batch], lambda: stop.reason is not None or out_of_time())
        stop.raise_if_stopped()  # a batch cut short by a stop is not recorded
        new = {f.cid: f.content for f in fetched if f.content is not None}
        # "stopped" here means out of time: as unavailable as a gateway that did not answer
        failures.update(
            {f.cid: "unavailable" if f.reason == "stopped" else f.reason for f in fetched if f.content is None}
        )
        if new:
            cache.save(new)
        stats.fetched += len(new)
        stats.failed += len(fetched) - len(new)
        progress(stats.cached + stats.fetched + stats.failed, stats.cids, stats)
    for kind in kinds:
        page: list[dict[str, Any]] = []
        for record in store.records(job_id, kind):
            page.append(record)
            if len(page) == PAGE:
                stats.unresolved_fields += _rewrite(store, cache, job_id, kind, page, failures, owner)
                page = []
        if page:
            stats.unresolved_fields += _rewrite(store, cache, job_id, kind, page, failures, owner)
    return stats


def _rewrite(
    store: ContentStore,
    cache: ContentCache,
    job_id: str,
    kind: str,
    records: list[dict[str, Any]],
    failures: dict[str, str],
    owner: str | None,
) -> int:
    """Writes these records back with their content; returns how many fields stay unresolved."""
    cids = {c.text for r in records for f in CID_FIELDS[kind] if (c := parse_cid(r.get(f) or "")) is not None}
    contents = cache.get(sorted(cids))
    updated = [with_content(kind, r, contents, failures) for r in records]
    if not store.replace_records(job_id, kind, updated, owner=owner):
        raise Stopped(LOST)  # our lease expired and another worker took the job
    return sum(len(r["unresolved"]) for r in updated)
