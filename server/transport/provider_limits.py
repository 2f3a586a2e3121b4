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
    """A provider refused an eth_getLogs range; ``suggested_blocks`` when it said what would work."""

    suggested_blocks: int | None


def range_limit(err: RpcError) -> RangeLimit | None:
    """Whether err is a range or result-size refusal of eth_getLogs, and the range the provider suggests."""
    text = err.message.lower()
    data = err.data
    if not (err.code in _LIMIT_CODES or any(word in text for word in _LIMIT_WORDS)):
        return None
    if isinstance(data, dict) and "from" in data and "to" in data:  # Infura: {"from": "0x..", "to": "0x.."}
        try:
            return RangeLimit(int(data["to"], 16) - int(data["from"], 16) + 1)
        except (TypeError, ValueError):
            pass
    pair = _SUGGESTED_PAIR.search(err.message)
    if pair:
        return RangeLimit(int(pair.group(2), 16) - int(pair.group(1), 16) + 1)
    number = _RANGE_NUMBER.search(err.message)
    if number:
        value = int(number.group(1).replace(",", "")) * (1000 if number.group(2).lower() == "k" else 1)
        if "result" not in err.message[number.start() : number.end() + 10].lower():
            return RangeLimit(value)
    return RangeLimit(None)
