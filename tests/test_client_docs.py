"""The examples of docs/python-client.md run as written, against the session stack."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.processes import REPO

DOC = REPO / "docs" / "python-client.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_example_runs(stack, monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    monkeypatch.setenv("CHAINSYNC_GRPC_ADDR", stack.server.addr)
    monkeypatch.setenv("CHAINSYNC_HTTP_ADDR", stack.bridge.addr)
    monkeypatch.delenv("CHAINSYNC_API_TOKEN", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(EXAMPLES[number], f"{DOC.name} example {number + 1}", "exec"), {})
    printed = out.getvalue()
    assert printed, "every example prints what it got"
    if number == 0:
        assert "100%" in printed and "proposals, blocks" in printed
    if "InvalidArgument" in EXAMPLES[number]:
        assert "bad input: blocksBack" in printed and "JOB_NOT_FOUND" in printed and "cancelled: " in printed
