"""Page tokens: the opaque strings ListJobs and GetResult hand out to continue a listing where a page ended.

A token is a JSON value in unpadded URL-safe base64; what it holds is the
caller's business (ListJobs: the list position of the page's last job,
GetResult: an offset per record kind). ``decode`` raises ValueError on
anything this server did not make, whatever its shape or size, so a
client's garbage becomes INVALID_ARGUMENT, never an internal error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_TOKEN_CHARS = 1024  # far more than a token this server makes (under 200)


def encode(value: Any) -> str:
    """The token of a JSON-able value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode(token: str, validate: Callable[[Any], T]) -> T:
    """The value ``validate`` makes of the token's JSON value; ValueError for a token this server did not
    make (``validate`` raises ValueError, TypeError or KeyError on a value of the wrong shape)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError("page token too long")
    try:
        padded = token + "=" * (-len(token) % 4)
        return validate(json.loads(base64.urlsafe_b64decode(padded.encode())))
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError, binascii.Error) as exc:
        raise ValueError(f"not a page token: {token[:64]!r}") from exc
