"""The error catalogue is the one place a reason's gRPC code and HTTP status are written (server/errors.py)."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from server.errors import CATALOGUE, HTTP_OF_CODE, ChainsyncError, http_status, markdown_table

REPO = Path(__file__).resolve().parent.parent


def test_the_docs_table_is_the_catalogue() -> None:
    doc = (REPO / "docs" / "rest-api.md").read_text()
    table = re.search(r"<!-- errors: generated from server/errors.py -->\n(.*?)\n<!-- /errors -->", doc, re.S)
    assert table, "docs/rest-api.md lost its generated errors table"
    assert table.group(1) == markdown_table(), "regenerate it: python -m server.errors"


def test_every_reason_has_a_real_grpc_code_and_the_http_status_design_md_gives_it() -> None:
    for reason, info in CATALOGUE.items():
        assert reason == reason.upper() and " " not in reason
        assert info.grpc_code in grpc.StatusCode.__members__, reason
        if not info.http_status:
            assert info.http == HTTP_OF_CODE[info.grpc_code], reason
    assert CATALOGUE["JOB_NOT_COMPLETED"].http == 409, "design.md: FAILED_PRECONDITION is 409 for 'not completed yet'"
    assert http_status(None, "NOT_FOUND") == 404 and http_status("NO_SUCH_REASON", "DATA_LOSS") == 500


def test_an_error_outside_the_catalogue_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="CATALOGUE"):
        ChainsyncError("JOB_NOT_FOUNDD", "typo")
