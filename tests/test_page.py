"""The jobs page at / of the REST bridge, end to end in Debian's headless Chromium.

Driven by playwright's Python package with /usr/bin/chromium (no browser
download; `make install` installs the Debian package). Real server and bridge
processes on the demo devnet: the page starts a full sync, its bar follows the
server-sent events to 100%, the job view shows the API's records; a slow job
is cancelled and deleted from the page; with auth on, the page asks for the
token once and shows a failed job's reason. Screenshots go to build/.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.processes import REPO, free_port, grpc_server, rest_bridge, stop_process, wait_for_port
from tests.stack import slow_server, wait_until

CHROMIUM = Path("/usr/bin/chromium")
BUILD = REPO / "build"
TOKEN = "page-test-token"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make install` installs it"
    with tempfile.TemporaryDirectory(prefix="chainsync-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


class PageProblems:
    """Script errors, Content-Security-Policy refusals and unexpected HTTP errors a page met (there should be none)."""

    def __init__(self, page: Page, expected_statuses: tuple[int, ...] = ()) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        page.on("response", lambda r: self._response(r.status, r.url, expected_statuses))

    def _console(self, msg) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):  # those are in _response
            self.errors.append(f"console: {msg.text}")

    def _response(self, status: int, url: str, expected: tuple[int, ...]) -> None:
        if status >= 400 and status not in expected:
            self.errors.append(f"HTTP {status}: {url}")


@contextmanager
def bridge_on(port: int, grpc_addr: str) -> Iterator[subprocess.Popen]:
    """`chainsync bridge` on a given port (tests.processes.rest_bridge picks a new one each time)."""
    env = {**os.environ, "CHAINSYNC_GRPC_ADDR": grpc_addr, "CHAINSYNC_HTTP_ADDR": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "bridge"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc, "chainsync bridge")
        yield proc
    finally:
        stop_process(proc)


def row(page: Page, job_id: str):
    return page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')


def timings(page: Page, job_id: str) -> list[dict]:
    return [t for t in page.evaluate("window.chainsyncTimings") if t["jobId"] == job_id]


def rfc3339_ms(text: str) -> float:
    """Milliseconds since the epoch of a protobuf JSON time (up to 9 fraction digits)."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return (base + float(f"0.{frac or '0'}")) * 1000


def latency_report(events: list[dict]) -> dict:
    local = [t["drawnAt"] - t["receivedAt"] for t in events]
    ended = [t["drawnAt"] - rfc3339_ms(t["endedAt"]) for t in events if t["endedAt"]]
    written = [t["drawnAt"] - rfc3339_ms(t["eventTime"]) for t in events if t["eventTime"]]
    report = {
        "events": len(local),
        "receivedToDrawnMs": {"median": statistics.median(local), "max": max(local)},
        "serverEndToDrawnMs": {"median": statistics.median(ended), "max": max(ended)} if ended else None,
        "eventWrittenToDrawnMs": {"median": statistics.median(written), "max": max(written)},
    }
    print(f"\njobs page update latency: {json.dumps(report)}")
    return report


def start_from_form(page: Page, *, full: bool = False, blocks_back: str = "") -> str:
    """Starts a job with the page's form; returns the id of the row it added."""
    before = set(page.locator("#jobs-body tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)"))
    page.locator("#full-sync").set_checked(full)
    if not full:
        page.fill("#blocks-back", blocks_back)
    page.click("#start-button")

    def new_row() -> str | None:
        ids = page.locator("#jobs-body tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
        fresh = [i for i in ids if i not in before]
        return fresh[0] if fresh else None

    return wait_until(new_row, 10, what="the started job's row")


def test_page_follows_a_full_sync_cancels_and_deletes(devnet, browser: BrowserContext, tmp_path: Path) -> None:
    BUILD.mkdir(exist_ok=True)
    with slow_server(devnet, tmp_path / "jobs.db") as server, rest_bridge(server.addr) as bridge:
        http = httpx.Client(base_url=bridge.url, timeout=30)
        page_response = http.get("/")
        assert page_response.status_code == 200
        assert "script-src 'self'" in page_response.headers["content-security-policy"]
        assert http.get("/jobs").json()["success"] is True  # the page does not shadow the API

        page = browser.new_page()
        problems = PageProblems(page)
        page.goto(bridge.url + "/")
        expect(page.locator("h1")).to_have_text("chainsync jobs")
        expect(page.locator("#jobs-empty")).to_be_visible()
        page.evaluate("window.notReloaded = true")

        # A full sync from the form; its bar is driven by the SSE stream up to 100%.
        job_id = start_from_form(page, full=True)
        job_row = row(page, job_id)
        expect(job_row.locator(".badge")).to_have_text("completed", timeout=60_000)
        expect(job_row.locator("progress")).to_have_js_property("value", 100)
        expect(job_row.locator(".pct")).to_have_text("100%")
        assert page.evaluate("window.notReloaded") is True
        seen = wait_until(  # timings are pushed on the frame after the row was updated
            lambda: (t := timings(page, job_id)) and t[-1]["status"] == "completed" and t, 5, what="the last timing"
        )
        progress = [t["progress"] for t in seen]
        assert any(0 < p < 100 for p in progress), f"no intermediate progress event drawn: {progress}"
        assert progress == sorted(progress) and progress[-1] == 100
        api_job = http.get(f"/api/blockchain/sync/status/{job_id}").json()["job"]
        assert job_row.locator(".range").inner_text() == f"{api_job['fromBlock']} – {api_job['toBlock']}"
        report = latency_report(seen)
        (BUILD / "jobs-page-latency.json").write_text(json.dumps(report, indent=2) + "\n")

        # A second full sync, cancelled from the page while it runs.
        slow_id = start_from_form(page, full=True)
        slow_row = row(page, slow_id)
        wait_until(lambda: any(15 < t["progress"] < 100 for t in timings(page, slow_id)), 30, what="some progress")
        slow_row.locator("button.cancel").click()
        expect(slow_row.locator(".badge")).to_have_text("cancelled", timeout=15_000)
        expect(slow_row.locator("button.cancel")).to_be_disabled()
        assert http.get(f"/api/blockchain/sync/status/{slow_id}").json()["job"]["status"] == "cancelled"
        page.locator("#jobs").scroll_into_view_if_needed()
        page.screenshot(path=str(BUILD / "jobs-page.png"))

        # The job view of the completed job: its records are the API's.
        result = http.get(f"/api/blockchain/sync/result/{job_id}").json()["result"]
        job_row.locator("td.range").click()
        view = page.locator("#job-view")
        expect(view).to_be_visible()
        expect(page.locator("#records")).to_be_visible()
        expect(page.locator("#job-failure")).to_be_hidden()
        for kind in ("proposals", "petitions", "reports"):
            label = kind.capitalize()
            expect(page.locator(f"#tab-{kind}")).to_have_text(f"{label} ({len(result[kind])})")
        assert all(len(result[k]) > 0 for k in ("proposals", "petitions", "reports")), "the demo chain has all kinds"
        first = result["proposals"][0]
        first_row = page.locator("#records-body tr").first
        assert first_row.get_attribute("data-record-id") == first["id"]
        assert first_row.locator("td.f-titleCid").inner_text() == first["titleCid"]
        assert first_row.locator("td.f-creator").inner_text() == first["creator"]
        assert first_row.locator("td.f-yesVotes").inner_text() == first["yesVotes"]
        total = len(result["proposals"])
        expect(page.locator("#page-info")).to_contain_text(f"{total} record")
        view.screenshot(path=str(BUILD / "job-view.png"))

        # Search by a petition's creator: only that creator's petitions are left.
        page.click("#tab-petitions")
        creator = result["petitions"][-1]["creator"]
        theirs = [p for p in result["petitions"] if p["creator"].lower() == creator.lower()]
        page.fill("#search", creator.upper().replace("0X", "0x"))  # case does not matter
        expect(page.locator("#page-info")).to_contain_text(f"{len(theirs)} record")
        shown = page.locator("#records-body td.f-creator").all_inner_texts()
        assert shown and set(shown) == {creator}
        assert len(theirs) < len(result["petitions"]) or len(result["petitions"]) == 1

        # Delete asks first: dismissed, the job stays; accepted, it is gone here and in the API.
        page.once("dialog", lambda dialog: dialog.dismiss())
        slow_row.locator("button.delete").click()
        expect(slow_row).to_have_count(1)
        assert http.get(f"/api/blockchain/sync/status/{slow_id}").status_code == 200
        page.once("dialog", lambda dialog: dialog.accept())
        slow_row.locator("button.delete").click()
        expect(slow_row).to_have_count(0)
        assert http.get(f"/api/blockchain/sync/status/{slow_id}").status_code == 404
        assert problems.errors == []
        page.close()
        http.close()


def test_page_with_auth_asks_for_the_token_once_and_shows_a_failure(
    devnet, browser: BrowserContext, tmp_path: Path
) -> None:
    env = {"CHAINSYNC_API_TOKEN": TOKEN}
    with (
        grpc_server(
            rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=tmp_path / "jobs.db", extra_env=env
        ) as server,
        rest_bridge(server.addr) as bridge,
        httpx.Client(base_url=bridge.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        page = browser.new_page()
        problems = PageProblems(page, expected_statuses=(400, 401))  # the bad blocksBack, the call without token
        api_calls: list[tuple[str, str | None]] = []
        page.on("request", lambda r: api_calls.append((r.url, r.headers.get("authorization"))))
        page.goto(bridge.url + "/")
        expect(page.locator("#token-panel")).to_be_visible()
        page.fill("#token", TOKEN)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#token-panel")).to_be_hidden()
        expect(page.locator("#forget-token")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('chainsync.token')") == TOKEN

        # The API's refusal is shown next to the form, naming the field.
        page.fill("#blocks-back", "0")
        page.click("#start-button")
        expect(page.locator("#start-error")).to_contain_text("blocksBack")
        expect(page.locator("#blocks-back")).to_have_attribute("aria-invalid", "true")

        job_id = start_from_form(page, blocks_back="50")
        expect(row(page, job_id).locator(".badge")).to_have_text("completed", timeout=30_000)
        expect(page.locator("#start-error")).to_be_hidden()

        # A job started elsewhere, which fails when it runs, shows up (list poll) with its reason.
        started = http.post("/api/blockchain/sync", json={"fromBlock": 0, "toBlock": 10**12})
        assert started.status_code == 202, started.text
        failed_id = started.json()["jobId"]
        failed = row(page, failed_id)
        expect(failed.locator(".badge")).to_have_text("failed", timeout=15_000)
        api_job = http.get(f"/api/blockchain/sync/status/{failed_id}").json()["job"]
        failed.locator("td.range").click()
        expect(page.locator("#job-failure")).to_be_visible()
        expect(page.locator("#failure-code")).to_have_text(api_job["errorCode"])
        expect(page.locator("#failure-message")).to_have_text(api_job["error"])
        expect(page.locator("#records")).to_be_hidden()
        page.screenshot(path=str(BUILD / "job-failed.png"))

        api = [(url, auth) for url, auth in api_calls if "/api/" in url or "/jobs" in url]
        assert api and all(TOKEN not in url for url, _ in api_calls), "the token never goes in a URL"
        assert [url for url, auth in api[1:] if auth != f"Bearer {TOKEN}"] == [], "every call after the first sends it"
        assert any("/events/" in url for url, _ in api), "the page followed the job's events"

        page.reload()  # the token is kept for the tab: not asked again
        expect(row(page, failed_id).locator(".badge")).to_have_text("failed")
        expect(page.locator("#token-panel")).to_be_hidden()

        page.click("#forget-token")
        assert page.evaluate("sessionStorage.getItem('chainsync.token')") is None
        expect(page.locator("#token-panel")).to_be_visible()
        assert problems.errors == []
        page.close()


def test_page_resumes_a_job_stream_after_the_bridge_restarts(devnet, browser: BrowserContext, tmp_path: Path) -> None:
    """The bridge dies mid-job; a new one comes up on the same address; the page reconnects with
    Last-Event-ID and draws the rest of the job without a reload."""
    port = free_port()
    with slow_server(devnet, tmp_path / "jobs.db") as server:
        page = browser.new_page()
        event_requests: list[dict[str, str]] = []
        page.on("request", lambda r: event_requests.append(r.headers) if "/events/" in r.url else None)
        with bridge_on(port, server.addr) as first_bridge:
            page.goto(f"http://127.0.0.1:{port}/")
            page.evaluate("window.notReloaded = true")
            job_id = start_from_form(page, full=True)
            wait_until(lambda: any(0 < t["progress"] < 100 for t in timings(page, job_id)), 30, what="some progress")
            first_bridge.kill()  # a crash: the open event stream breaks mid-job
            first_bridge.wait(timeout=10)
        before = len(event_requests)
        with bridge_on(port, server.addr):
            expect(row(page, job_id).locator(".badge")).to_have_text("completed", timeout=30_000)
            expect(row(page, job_id).locator("progress")).to_have_js_property("value", 100)
        assert page.evaluate("window.notReloaded") is True
        resumed = [h for h in event_requests[before:] if "last-event-id" in h]
        assert resumed, f"no reconnect with Last-Event-ID: {event_requests}"
        assert int(resumed[0]["last-event-id"]) >= 1
        progress = [t["progress"] for t in timings(page, job_id)]
        assert progress == sorted(progress) and progress[-1] == 100
        page.close()
