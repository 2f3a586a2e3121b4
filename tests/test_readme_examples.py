"""The README's "For client authors" examples run as written against a real server and bridge."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.processes import REPO

SECTION = re.search(r"^## For client authors.*?(?=^## )", (REPO / "README.md").read_text(), flags=re.S | re.M)
EXAMPLES = re.findall(r"```python\n(.*?)```", SECTION.group(0) if SECTION else "", flags=re.S)


def test_the_readme_shows_four_ways_to_follow_a_job() -> None:
    assert len(EXAMPLES) == 4


@pytest.mark.parametrize("number", range(len(EXAMPLES)), ids=["poll", "sse", "grpc-stream", "client"])
def test_example_runs(stack, monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    monkeypatch.setenv("CHAINSYNC_URL", stack.bridge.url)
    monkeypatch.setenv("CHAINSYNC_GRPC_ADDR", stack.server.addr)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(EXAMPLES[number], f"README example {number + 1}", "exec"), {})
    printed = out.getvalue()
    if number in (0, 1):
        assert "completed 100%" in printed, printed
    if number == 1:
        assert "running" in printed.split("completed 100%")[0] or "pending" in printed, "events before the end"
        assert printed.rstrip().endswith("stream ended after end"), printed
    if number == 2:
        assert "JOB_STATE_COMPLETED 100%" in printed, printed
    if number == 3:
        assert re.search(r"^completed: \d+ records in blocks \d+\.\.\d+$", printed, flags=re.M), printed
    if number in (0, 2):
        counts = re.search(r"^(\d+) proposals, blocks (\d+)\.\.(\d+)$", printed, flags=re.M)
        assert counts and int(counts.group(1)) > 0 and int(counts.group(2)) < int(counts.group(3)), printed
