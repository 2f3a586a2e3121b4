"""What real providers answer when an eth_getLogs (or trace_filter) range or its result is too large.

Owns ``range_limit``: whether a JSON-RPC error is such a refusal (Infura,
Alchemy, QuickNode, geth, erigon, reth, ... each word it differently) and the
range the provider suggests, when it says; the engine then splits the range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass
class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    code: int
    message: str
    data: Any = None
    url: str = ""

    def __str__(self) -> str:
        return f"JSON-RPC error {self.code} from {self.url}: {self.message}"


_SUGGESTED_PAIR = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")  # Alchemy
_RANGE_NUMBER = re.compile(
    r"(?:up to (?:a )?|max(?:imum)? (?:block )?range(?: of| is)? |limited to (?:a )?|range (?:of|limit(?: of)?) )"
    r"(\d[\d,]*)(k?)",
    re.IGNORECASE,
)
_LIMIT_WORDS = (
    "query returned more than",  # Infura, geth
    "log response size exceeded",  # Alchemy
    "block range",  # "block range too large", "block range is too wide", erigon's "...block range exceeds..."
    "range too large",
    "range is too large",
    "exceeds max block range",  # reth
    "exceeds max results",  # reth
    "limit exceeded",
    "too many results",
    "response size",
    "is limited to",  # QuickNode
    "max range",
    "more than 10000",
)
_LIMIT_CODES = (-32005, -32614)  # Infura "limit exceeded", QuickNode "range limit"


@dataclass(frozen=True)
class RangeLimit:
    """A provider refused an eth_getLogs range; ``suggested_blocks`` when it said what would work for this
    request, ``stated_cap`` when it said how many blocks it accepts whatever their logs ("up to a 2K block
    range", "limited to 300"): a cap worth remembering, where a suggestion may only reflect dense blocks."""

    suggested_blocks: int | None
    stated_cap: int | None = None


def range_limit(err: RpcError) -> RangeLimit | None:
    """Whether err is a range or result-size refusal of eth_getLogs, and the range the provider suggests."""
    text = err.message.lower()
    data = err.data
    if not (err.code in _LIMIT_CODES or any(word in text for word in _LIMIT_WORDS)):
        return None
    cap = None
    number = _RANGE_NUMBER.search(err.message)
    if number and "result" not in err.message[number.start() : number.end() + 10].lower():
        cap = int(number.group(1).replace(",", "")) * (1000 if number.group(2).lower() == "k" else 1)
    if isinstance(data, dict) and "from" in data and "to" in data:  # Infura: {"from": "0x..", "to": "0x.."}
        try:
            return RangeLimit(int(data["to"], 16) - int(data["from"], 16) + 1, cap)
        except (TypeError, ValueError):
            pass
    pair = _SUGGESTED_PAIR.search(err.message)
    if pair:
        return RangeLimit(int(pair.group(2), 16) - int(pair.group(1), 16) + 1, cap)
    return RangeLimit(cap, cap)
