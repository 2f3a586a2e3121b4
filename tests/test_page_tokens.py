"""The one page-token codec of ListJobs and GetResult (server/service/page_tokens.py)."""

from __future__ import annotations

import base64

import pytest

from server.service import page_tokens
from server.service.servicer import _list_position, _result_offsets


def test_a_token_round_trips_its_value() -> None:
    position = (1790000000.123456, "0b1c9a4e-6f1e-4d55-9a51-7d8f1c2b3a4d")
    token = page_tokens.encode(list(position))
    assert "=" not in token and page_tokens.decode(token, _list_position) == position
    offsets = {"proposals": 10, "petitions": 0, "reports": 3}
    assert page_tokens.decode(page_tokens.encode(offsets), _result_offsets) == offsets


def test_tokens_made_before_the_codec_was_shared_still_decode() -> None:
    # ListJobs' old encode_page_token and GetResult's old _encode_token made these bytes.
    assert page_tokens.decode("WzE3MDAwMDAwMDAuNSwgImFiYyJd", _list_position) == (1700000000.5, "abc")
    assert page_tokens.decode("eyJwcm9wb3NhbHMiOiAyfQ", _result_offsets) == {"proposals": 2}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "\u00b2abc",
        "\ud800",
        b64(b"\xff\xfe"),
        b64(b"5"),
        b64(b"null"),
        b64(b'[[1], "a"]'),
        b64(b'[1e999, "a"]'),
        b64(b"[" + b"9" * 400 + b', "a"]'),
        b64(b'[true, "a"]'),
        b64(b'[1, "a", 2]'),
        b64(b'{"a": 1}'),
        b64(b"[" * 100_000),
        "A" * 5000,
    ],
)
def test_anything_else_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError):
        page_tokens.decode(token, _list_position)


@pytest.mark.parametrize(
    "value", [[1, 2], {"proposals": -1}, {"proposals": 2**62}, {"proposals": True}, {"x": 1}, {"reports": 1.0}]
)
def test_result_offsets_of_the_wrong_shape_are_refused(value) -> None:
    with pytest.raises(ValueError):
        page_tokens.decode(page_tokens.encode(value), _result_offsets)
