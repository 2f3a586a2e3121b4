"""IPFS content behind the records' *Cid fields (server/jobs/ipfs.py, server/jobs/cid.py, docs/ipfs.md).

The gateway is a real HTTP server on 127.0.0.1 in a thread, serving
``/ipfs/{cid}`` from the devnet scenario's content (devnet/scenario.py
scenario_contents). It can answer 500 or 429 for chosen CIDs, lie, be slow,
and counts the requests it gets and the most it had in flight at once.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from devnet.scenario import raw_cid, scenario_contents
from rest_bridge import models
from rest_bridge.convert import record_json
from server.config import Settings
from server.jobs.cid import parse_cid, unixfs_file, verify
from server.jobs.ipfs import CID_FIELDS, Gateways, IpfsSettings, resolve_job_content, with_content
from server.jobs.store import ContentCache, JobStore, SQLiteConnector
from server.service.messages import record_message
from server.stopping import NEVER, Stopped
from tests.processes import free_port, grpc_server, rest_bridge
from tests.stack import TERMINAL, wait_for_state, wait_until
from tests.test_store import Backend, backend, pg_schema, running  # noqa: F401 (fixtures)

KINDS = ("proposals", "petitions", "reports")


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connects under a burst: the client waits 1 s to retry
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away mid-answer (a killed server) is expected here


class Gateway:
    """An IPFS HTTP gateway on a free loopback port: GET /ipfs/{cid} -> the content under cid."""

    def __init__(
        self,
        contents: dict[str, bytes | str],
        *,
        blocks: dict[str, bytes] | None = None,
        lie: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.contents = {k: v.encode() if isinstance(v, str) else v for k, v in contents.items()}
        self.blocks = blocks or {}  # CID -> block, for ?format=raw (a raw CID's block is its content)
        self.lie = lie  # serve content that is not the CID's
        self.delay_s = delay_s
        self.fail: set[str] = set()  # these answer 500
        self.throttle: Counter[str] = Counter()  # these answer 429 this many times first
        self.requests: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real gateways
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait between

            def do_GET(self) -> None:
                gateway._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        cid, _, query = handler.path.removeprefix("/ipfs/").partition("?")
        served = self.blocks if query == "format=raw" and cid in self.blocks else self.contents
        with self._lock:
            self.requests[cid] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            throttled = self.throttle[cid] > 0
            if throttled:
                self.throttle[cid] -= 1
        try:
            time.sleep(self.delay_s)
            if throttled:
                status, body = 429, b"slow down"
            elif cid in self.fail:
                status, body = 500, b"gateway error"
            elif cid not in served:
                status, body = 404, b"no link named"
            else:
                status, body = 200, served[cid] + (b" (altered)" if self.lie else b"")
        finally:
            # No longer in flight once the answer is decided: the client may send its next request as soon as
            # it has the answer, before this thread would get back here after writing it.
            with self._lock:
                self.in_flight -= 1
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        if throttled:
            handler.send_header("Retry-After", "0")
        handler.end_headers()
        handler.wfile.write(body)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextmanager
def gateways(*urls: str, **settings: object) -> Iterator[Gateways]:
    fetcher = Gateways(IpfsSettings(tuple(urls), **{"backoff_s": 0.01, **settings}))
    try:
        yield fetcher
    finally:
        fetcher.close()


# -- CIDs ----------------------------------------------------------------------

HELLO = b"hello world"
# The CIDv1 of "hello world" as one raw block, from the spec'd layout: multibase 'b' + base32 (lower, no
# padding) of version 1, codec raw 0x55, multihash sha2-256 0x12 of length 0x20, the digest.
HELLO_CID = "b" + base64.b32encode(b"\x01\x55\x12\x20" + hashlib.sha256(HELLO).digest()).decode().lower().rstrip("=")
PUBLISHED_V0 = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u"


def test_a_raw_cidv1_parses_and_verifies_its_content() -> None:
    assert HELLO_CID == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"  # as published
    cid = parse_cid(HELLO_CID)
    assert cid is not None
    assert (cid.version, cid.codec, cid.hash_code, cid.digest) == (1, 0x55, 0x12, hashlib.sha256(HELLO).digest())
    assert verify(cid, HELLO) and not verify(cid, b"hello world!")
    assert parse_cid(f"ipfs://{HELLO_CID}") == cid and parse_cid(f"/ipfs/{HELLO_CID}") == cid


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes((value,))


def _field(number: int, value: int | bytes) -> bytes:
    """One protobuf field, as dag-pb and UnixFS write them (varint or length-delimited)."""
    if isinstance(value, int):
        return _uvarint(number << 3) + _uvarint(value)
    return _uvarint(number << 3 | 2) + _uvarint(len(value)) + value


def file_block(data: bytes, links: list[bytes] = (), sizes: list[int] = (), kind: int = 2) -> bytes:
    """A dag-pb node of a UnixFS file (kind 2; 1 is a directory): PBNode {Links, Data: UnixFS Data}."""
    total = len(data) + sum(sizes)
    unixfs = _field(1, kind) + (_field(2, data) if data else b"") + _field(3, total)
    unixfs += b"".join(_field(4, n) for n in sizes)
    return b"".join(_field(2, _field(1, link)) for link in links) + _field(1, unixfs)


def v0(block: bytes) -> str:
    """The CIDv0 (base58btc sha2-256 multihash) of a dag-pb block."""
    number, text = int.from_bytes(b"\x12\x20" + hashlib.sha256(block).digest(), "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[digit] + text
    return text


def v1_bytes(codec: int, block: bytes) -> bytes:
    return bytes((1, codec, 0x12, 0x20)) + hashlib.sha256(block).digest()


def v1(codec: int, block: bytes) -> str:
    return "b" + base64.b32encode(v1_bytes(codec, block)).decode().lower().rstrip("=")


def test_a_cidv0_is_a_dag_pb_block_whose_file_is_checked() -> None:
    # What `ipfs add` makes of "Hello World\n" (one block), rebuilt byte by byte: its CID is the published one.
    block = file_block(b"Hello World\n")
    assert v0(block) == PUBLISHED_V0
    cid = parse_cid(PUBLISHED_V0)
    assert cid is not None and (cid.version, cid.codec, cid.hash_code) == (0, 0x70, 0x12)
    assert cid.verifiable and verify(cid, block) and not verify(cid, b"Hello World\n")
    assert unixfs_file(block) == (b"Hello World\n", [], 12)
    assert parse_cid(cid.as_v1()).digest == cid.digest
    with pytest.raises(ValueError):
        unixfs_file(file_block(b"", kind=1))  # a directory is no file


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "Q✓ ünïcødé title " + HELLO_CID,
        "ipfs://" + "-".join([HELLO_CID] * 5),
        HELLO_CID[:-1],  # digest one character short
        HELLO_CID + "a",
        HELLO_CID.upper(),  # base32 upper is multibase 'B', not handled
        "bafy!!",
        PUBLISHED_V0[:-1] + "0",  # '0' is not base58
        "ipfs://",
        " " + HELLO_CID,
    ],
)
def test_anything_else_is_not_a_cid(text: str) -> None:
    assert parse_cid(text) is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHAINSYNC_IPFS_GATEWAY": "ipfs.io"}, "CHAINSYNC_IPFS_GATEWAY"),
        ({"CHAINSYNC_IPFS_GATEWAY": "https://ipfs.io,ftp://x"}, "CHAINSYNC_IPFS_GATEWAY"),
        ({"CHAINSYNC_IPFS_CONCURRENCY": "0"}, "CHAINSYNC_IPFS_CONCURRENCY"),
        ({"CHAINSYNC_IPFS_TIMEOUT": "soon"}, "CHAINSYNC_IPFS_TIMEOUT"),
    ],
)
def test_bad_settings_stop_the_server_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SystemExit, match=named):
        Settings.from_env(env)


def test_gateways_are_read_in_order() -> None:
    settings = Settings.from_env({"CHAINSYNC_IPFS_GATEWAY": "https://a.example, http://127.0.0.1:8081/"})
    assert settings.ipfs_gateways == ("https://a.example", "http://127.0.0.1:8081/")
    assert Settings.from_env({}).ipfs_gateways == ()  # resolution is off unless asked for


# -- fetching ------------------------------------------------------------------


def test_429_then_success_is_retried_and_resolved() -> None:
    with Gateway({HELLO_CID: HELLO}) as gw, gateways(gw.url) as fetcher:
        gw.throttle[HELLO_CID] = 2
        got = fetcher.fetch(parse_cid(HELLO_CID))
    assert (got.content, got.reason) == ("hello world", None)
    assert gw.requests[HELLO_CID] == 3


def test_a_lying_gateway_is_caught_and_the_next_one_used() -> None:
    cid = parse_cid(HELLO_CID)
    with Gateway({HELLO_CID: HELLO}, lie=True) as liar, Gateway({HELLO_CID: HELLO}) as honest:
        with gateways(liar.url) as fetcher:
            assert fetcher.fetch(cid).reason == "hash_mismatch"
        with gateways(liar.url, honest.url) as fetcher:
            assert fetcher.fetch(cid).content == "hello world"
        assert liar.requests[HELLO_CID] == 2 and honest.requests[HELLO_CID] == 1


def test_a_dag_pb_file_is_fetched_block_by_block_and_each_block_checked() -> None:
    leaves = [b"Hello ", "Wörld\n".encode()]
    root = file_block(b"", [v1_bytes(0x55, leaf) for leaf in leaves], [len(leaf) for leaf in leaves])
    root_cid, single = v1(0x70, root), file_block(b"Hello World\n")
    blocks = {root_cid: root, PUBLISHED_V0: single, **{v1(0x55, leaf): leaf for leaf in leaves}}
    files = {root_cid: "Hello Wörld\n", PUBLISHED_V0: "Hello World\n"}  # what a gateway serves without ?format=raw
    cids = [parse_cid(root_cid), parse_cid(PUBLISHED_V0)]
    with Gateway(files, blocks=blocks) as gw, gateways(gw.url) as fetcher:
        assert [f.content for f in fetcher.fetch_many(cids)] == ["Hello Wörld\n", "Hello World\n"]
        assert gw.requests == Counter(list(blocks)), "each block once"
    with Gateway(files) as ignores_format_raw, gateways(ignores_format_raw.url) as fetcher:
        assert [f.reason for f in fetcher.fetch_many(cids)] == ["hash_mismatch", "hash_mismatch"]
    lying_leaf = {**blocks, v1(0x55, leaves[1]): b"World\n"}
    directory = file_block(b"", kind=1)
    with Gateway({}, blocks={**lying_leaf, v0(directory): directory}) as gw, gateways(gw.url) as fetcher:
        assert fetcher.fetch(parse_cid(root_cid)).reason == "hash_mismatch"
        assert fetcher.fetch(parse_cid(v0(directory))).reason == "not_text"


def test_failures_are_reasons_not_text() -> None:
    not_text, big = b"\xff\xfe\x00 not utf-8", b"x" * 2_000
    contents = {raw_cid(not_text): not_text, raw_cid(big): big, HELLO_CID: HELLO}
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Gateway(contents) as gw, gateways(dead, gw.url, max_bytes=1_000, attempts=2) as fetcher:
        gw.fail.add(HELLO_CID)
        missing = raw_cid(b"nobody has this")
        got = {f.cid: f for f in fetcher.fetch_many([parse_cid(c) for c in [*contents, missing]])}
    assert got[raw_cid(not_text)].reason == "not_text"
    assert got[raw_cid(big)].reason == "too_large"
    assert got[HELLO_CID].reason == "unavailable" and gw.requests[HELLO_CID] == 2  # 500: retried, then given up
    assert got[missing].reason == "unavailable"  # the dead gateway outranks the other's 404
    assert all(f.content is None for f in got.values())


def test_a_gateway_that_is_down_is_skipped() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with Gateway({HELLO_CID: HELLO}) as gw, gateways(dead, gw.url) as fetcher:
        got = fetcher.fetch_many([parse_cid(HELLO_CID)])
    assert [f.content for f in got] == ["hello world"]
    with Gateway({}) as gw, gateways(gw.url) as fetcher:
        assert fetcher.fetch(parse_cid(HELLO_CID)).reason == "not_found" and gw.requests[HELLO_CID] == 1


def test_a_gateway_that_keeps_failing_is_skipped_for_a_while() -> None:
    contents = {raw_cid(f"text {i}".encode()): f"text {i}" for i in range(100)}
    cids = [parse_cid(c) for c in contents]
    settings = {"concurrency": 4, "attempts": 3, "down_after": 5, "down_for_s": 0.5}
    with Gateway(contents) as gw, gateways(gw.url, **settings) as fetcher:
        gw.fail |= set(contents)
        got = fetcher.fetch_many(cids)
        assert {f.reason for f in got} == {"unavailable"} and fetcher.is_down(gw.url)
        # Without the breaker: 100 CIDs x 3 attempts. With it: the first few CIDs' retries, and those in flight.
        assert sum(gw.requests.values()) <= (5 + 4) * 3, gw.requests
        gw.fail.clear()
        wait_until(lambda: not fetcher.is_down(gw.url), 2, what="the gateway to be tried again")
        assert [f.content for f in fetcher.fetch_many(cids)] == list(contents.values())


def test_a_few_cids_that_fail_in_a_row_do_not_take_a_gateway_out() -> None:
    contents = {raw_cid(f"text {i}".encode()): f"text {i}" for i in range(40)}
    missing = sorted(contents)[:10]  # what a gateway answers 5xx for when nobody has the content
    with Gateway(contents) as gw, gateways(gw.url, concurrency=4) as fetcher:
        gw.fail |= set(missing)
        got = {f.cid: f for f in fetcher.fetch_many([parse_cid(c) for c in sorted(contents)])}
        assert not fetcher.is_down(gw.url)
    assert {c for c, f in got.items() if f.content is None} == set(missing)
    assert all(got[c].content == contents[c] for c in contents if c not in missing)


def test_requests_in_flight_stay_within_the_bound() -> None:
    contents = {raw_cid(f"text {i}".encode()): f"text {i}" for i in range(24)}
    with Gateway(contents, delay_s=0.05) as gw, gateways(gw.url, concurrency=3) as fetcher:
        got = fetcher.fetch_many([parse_cid(c) for c in contents])
    assert [f.content for f in got] == list(contents.values())
    assert gw.max_in_flight == 3  # never more than the bound, and the bound is used


# -- the cache, on both backends -------------------------------------------------


def test_the_cache_serves_a_later_job_and_keeps_no_failures(backend: Backend) -> None:  # noqa: F811
    store = backend.open()
    title, description, failing = HELLO_CID, raw_cid("Ünïcødé ✓".encode()), raw_cid(b"fails")
    contents = {title: HELLO, description: "Ünïcødé ✓".encode(), failing: b"fails"}
    records = [
        {"id": "1", "titleCid": title, "descriptionCid": ""},
        {"id": "2", "titleCid": "not a cid", "descriptionCid": f"ipfs://{description}"},
        {"id": "3", "titleCid": failing, "descriptionCid": title},
    ]

    def resolve(job_id: str, fetcher: Gateways, owner: str = "a"):
        return resolve_job_content(
            store,
            ContentCache(store.connector),
            job_id,
            ["reports"],
            fetcher,
            owner=owner,
            stop=NEVER,
            progress=lambda done, total, stats: None,
        )

    with Gateway(contents) as gw, gateways(gw.url, attempts=1) as fetcher:
        gw.fail.add(failing)
        first = running(store, "a")
        store.save_chunk(first.id, checkpoint={}, records=("reports", records))
        stats = resolve(first.id, fetcher)
        assert (stats.cids, stats.cached, stats.fetched, stats.failed, stats.unresolved_fields) == (3, 0, 2, 1, 2)
        assert sum(gw.requests.values()) == 3
        got = list(store.records(first.id, "reports"))
        assert got == [
            {"id": "1", "titleCid": title, "descriptionCid": "", "title": "hello world", "unresolved": []},
            {
                "id": "2",
                "titleCid": "not a cid",
                "descriptionCid": f"ipfs://{description}",
                "description": "Ünïcødé ✓",
                "unresolved": [{"field": "titleCid", "cid": "not a cid", "reason": "not_a_cid"}],
            },
            {
                "id": "3",
                "titleCid": failing,
                "descriptionCid": title,
                "description": "hello world",
                "unresolved": [{"field": "titleCid", "cid": failing, "reason": "unavailable"}],
            },
        ]
        assert ContentCache(backend.open().connector).get([title, description, failing]) == {
            title: "hello world",
            description: "Ünïcødé ✓",
        }, "another replica sees the cache; the failure is not cached"

        gw.reset()
        gw.fail.clear()
        store.finish(first.id, "completed", message="done")
        second = running(store, "b")
        store.save_chunk(second.id, checkpoint={}, records=("reports", records))
        stats = resolve(second.id, fetcher, owner="b")
        assert gw.requests == Counter({failing: 1}), "only the CID that failed before is fetched"
        assert (stats.cached, stats.fetched, stats.failed) == (2, 1, 0)
        assert [r.get("title") for r in store.records(second.id, "reports")] == ["hello world", None, "fails"]
        with pytest.raises(Stopped):
            resolve(second.id, fetcher, owner="a")  # a worker that lost the job writes nothing


def test_out_of_time_the_step_stops_fetching_and_writes_what_it_has(tmp_path) -> None:
    store = JobStore(SQLiteConnector(tmp_path / "jobs.sqlite3"))
    texts = [b"", b"first", b"second", b"third"]  # "" is content too: resolved to empty, not unresolved
    records = [{"id": str(i), "titleCid": raw_cid(t), "descriptionCid": ""} for i, t in enumerate(texts, 1)]
    job = running(store, "a")
    store.save_chunk(job.id, checkpoint={}, records=("reports", records))
    batches: list[int] = []
    with Gateway({raw_cid(t): t for t in texts}) as gw, gateways(gw.url, batch=2) as fetcher:
        stats = resolve_job_content(
            store,
            ContentCache(store.connector),
            job.id,
            ["reports"],
            fetcher,
            owner="a",
            stop=NEVER,
            progress=lambda done, total, stats: batches.append(done),
            out_of_time=lambda: len(batches) > 1,  # after the first batch of two
        )
        assert sum(gw.requests.values()) == 2
    assert (stats.cids, stats.fetched, stats.failed, stats.unresolved_fields) == (4, 2, 2, 2)
    got = {r["titleCid"]: r for r in store.records(job.id, "reports")}
    fetched = sorted(raw_cid(t) for t in texts)[:2]  # the step fetches in CID order
    for text in texts:
        record = got[raw_cid(text)]
        if raw_cid(text) in fetched:
            assert record["title"] == text.decode() and record["unresolved"] == []
        else:
            assert "title" not in record and record["unresolved"][0]["reason"] == "unavailable"


def test_content_resolved_to_empty_is_not_content_unresolved() -> None:
    record = {"id": "1", "titleCid": raw_cid(b""), "descriptionCid": raw_cid(b"x")}
    updated = with_content("reports", record, {raw_cid(b""): ""}, {raw_cid(b"x"): "not_found"})
    message = record_message("reports", updated)
    assert message.HasField("title") and message.title == "" and not message.HasField("description")
    shown = record_json(message)
    assert shown["title"] == "" and "description" not in shown
    assert shown["unresolved"] == [{"field": "descriptionCid", "cid": raw_cid(b"x"), "reason": "not_found"}]
    assert "unresolved" not in record_json(record_message("reports", {**updated, "unresolved": []}))


# -- a whole job -----------------------------------------------------------------


def start(stub: jobs_pb2_grpc.JobServiceStub) -> str:
    job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
    job = wait_for_state(stub, job_id, TERMINAL, timeout_s=90)
    assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job
    return job_id


def check_records(result: dict, contents: dict[str, str], failing: set[str]) -> int:
    """Every CID field's content is its CID's; returns how many fields were checked."""
    checked = 0
    for kind in KINDS:
        model = models.RECORD_MODELS[kind]
        for record in result[kind]:
            model.model_validate(record)  # the shape the OpenAPI document gives
            unresolved = {u["field"]: u for u in record.get("unresolved", [])}
            for cid_field, text_field in CID_FIELDS[kind].items():
                value = record[cid_field]
                cid = parse_cid(value)
                where = (kind, record["id"], cid_field)
                if not value:
                    assert text_field not in record and cid_field not in unresolved, where
                elif cid is None:
                    assert unresolved[cid_field] == {"field": cid_field, "cid": value, "reason": "not_a_cid"}, where
                    assert text_field not in record, where
                elif cid.text in failing:
                    assert unresolved[cid_field]["reason"] == "unavailable" and text_field not in record, where
                else:
                    assert record[text_field] == contents[cid.text] and cid_field not in unresolved, where
                checked += 1
    return checked


def test_a_sync_resolves_every_cid_field_and_the_next_one_uses_the_cache(devnet, tmp_path) -> None:
    contents = scenario_contents(devnet.expected.counts)
    records = {kind: devnet.expected.entities(kind).values() for kind in KINDS}
    cids = {
        c.text
        for kind in KINDS
        for r in records[kind]
        for f in CID_FIELDS[kind]
        if (c := parse_cid(r[f] or "")) is not None
    }
    assert len(cids) > 500 and cids <= set(contents)
    fields = sum(len(CID_FIELDS[kind]) * len(records[kind]) for kind in KINDS)  # every record's, in the result
    not_cids = [r[f] for k in KINDS for r in records[k] for f in CID_FIELDS[k] if r[f] and parse_cid(r[f]) is None]
    assert len(not_cids) >= 3, "the scenario has fields that are not CIDs"
    failing = set(sorted(cids)[:5])
    with Gateway(contents) as gw:
        gw.fail |= failing
        env = {"CHAINSYNC_IPFS_GATEWAY": gw.url, "CHAINSYNC_IPFS_CONCURRENCY": "4"}
        db = tmp_path / "jobs.sqlite3"
        with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as server:
            with rest_bridge(server.addr) as bridge, httpx.Client(base_url=bridge.url, timeout=30) as http:
                with grpc.insecure_channel(server.addr) as channel:
                    stub = jobs_pb2_grpc.JobServiceStub(channel)
                    first = start(stub)
                    assert 1 <= gw.max_in_flight <= 4
                    assert set(gw.requests) == cids and all(gw.requests[c] == 3 for c in failing)
                    assert all(n == 1 for c, n in gw.requests.items() if c not in failing), "one request per CID"
                    body = http.get(f"/api/blockchain/sync/result/{first}").json()
                    assert check_records(body["result"], contents, failing) == fields
                    stats = http.get(f"/api/blockchain/sync/status/{first}").json()["job"]["stats"]
                    assert stats["contentCids"] == len(cids) and stats["contentFailed"] == 5
                    assert stats["contentFetched"] == len(cids) - 5 and stats["contentCached"] == 0

                    gw.reset()
                    gw.fail.clear()
                    second = start(stub)
                    assert gw.requests == Counter({c: 1 for c in failing}), "the rest came from the cache"
                    body = http.get(f"/api/blockchain/sync/result/{second}").json()
                    check_records(body["result"], contents, set())
                    job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=second))
                    assert (job.stats.content_cached, job.stats.content_fetched) == (len(cids) - 5, 5)
                    assert job.stats.content_unresolved == len(not_cids)


def test_a_job_completes_when_the_gateway_is_down(devnet, tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"CHAINSYNC_IPFS_GATEWAY": dead, "CHAINSYNC_IPFS_TIMEOUT": "2"}
    db = tmp_path / "jobs.sqlite3"
    with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as server:
        with grpc.insecure_channel(server.addr) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            started = time.monotonic()
            job_id = start(stub)
            took = time.monotonic() - started
            result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    assert took < 15, f"a dead gateway cost every CID its retries ({took:.1f} s)"
    for kind in KINDS:
        for record in getattr(result, kind):
            reasons = {u.field: u.reason for u in record.unresolved}
            for cid_field, text_field in CID_FIELDS[kind].items():
                value = getattr(record, _snake(cid_field))
                assert not record.HasField(_snake(text_field)), (kind, record.id, text_field)
                want = None if not value else "not_a_cid" if parse_cid(value) is None else "unavailable"
                assert reasons.get(cid_field) == want, (kind, record.id, cid_field)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def test_a_job_is_cancelled_while_resolving_within_two_seconds(devnet, tmp_path) -> None:
    contents = scenario_contents(devnet.expected.counts)
    with Gateway(contents, delay_s=0.2) as gw:
        env = {"CHAINSYNC_IPFS_GATEWAY": gw.url, "CHAINSYNC_IPFS_CONCURRENCY": "2"}
        db = tmp_path / "jobs.sqlite3"
        with grpc_server(rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=db, extra_env=env) as server:
            with grpc.insecure_channel(server.addr) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
                wait_until(lambda: gw.requests, 60, what="the resolution to start")
                started = time.monotonic()
                stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
                job = wait_for_state(stub, job_id, TERMINAL, timeout_s=10)
                took = time.monotonic() - started
                assert job.state == jobs_pb2.JOB_STATE_CANCELLED, job
                assert took < 2.0, f"cancel took {took:.2f} s"
                asked = sum(gw.requests.values())
                time.sleep(0.5)
                assert sum(gw.requests.values()) == asked, "no gateway request after the job ended"
                assert asked < 64, "the batch under way stopped too"


def test_a_job_killed_while_resolving_resumes_from_the_cache(devnet, tmp_path) -> None:
    contents = scenario_contents(devnet.expected.counts)
    db = tmp_path / "jobs.sqlite3"
    with Gateway(contents, delay_s=0.01) as gw:
        env = {"CHAINSYNC_IPFS_GATEWAY": gw.url, "CHAINSYNC_IPFS_CONCURRENCY": "2"}
        server_args = {"rpc_url": devnet.url, "deployment_path": devnet.deployment_path, "db": db, "extra_env": env}
        with grpc_server(**server_args) as server, grpc.insecure_channel(server.addr) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            job_id = stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: sum(gw.requests.values()) >= 200, 60, what="the resolution under way")
            message = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).message
            assert message.startswith("Resolving IPFS content ("), message
            server.proc.kill()  # no chance to save anything more
            server.proc.wait(timeout=10)
        gw.delay_s = 0.0
        before = Counter(gw.requests)
        with grpc_server(**server_args) as server, grpc.insecure_channel(server.addr) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            job = wait_for_state(stub, job_id, TERMINAL, timeout_s=90)
            assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job
            assert 0 < job.stats.content_cached <= sum(before.values())
    again = [c for c in before if gw.requests[c] > before[c]]
    assert len(again) <= 64, "at most the batch in flight at the kill is fetched twice"
    assert job.stats.content_cached >= len(before) - 64
