"""What the sync knows of the contracts, derived from the record kinds (server/kinds.py) and their ABIs.

Owns: reading the deployment file (name -> address, optional chainId and
deploymentBlocks), the ABIs from contracts/artifacts/, and, per record kind,
the event topics that name an entity (and where the id is among the topics),
the id-taking mutators' selectors, the getter's and the counter's call
encoding and the decoding of the getter's return values into a record
(uint256 as decimal strings, addresses EIP-55). Built once per process;
decoding is a lean decoder built once per getter, exact as eth_abi.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from server.errors import ChainsyncError
from server.kinds import KINDS, RecordKind

ARTIFACTS = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


@dataclass(frozen=True)
class Deployment:
    addresses: dict[str, str]
    chain_id: int | None
    deployment_blocks: dict[str, int]

    @property
    def earliest_block(self) -> int:
        """Where a full sync starts: the earliest deployment block, or 0."""
        blocks = [b for name, b in self.deployment_blocks.items() if name in self.addresses]
        return min(blocks) if blocks else 0


def load_deployment(path: str | Path) -> Deployment:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ChainsyncError(
            "DEPLOYMENT_NOT_FOUND",
            f"no deployment file at {path}; run `chainsync devnet` or set CHAINSYNC_DEPLOYMENT",
        ) from None
    addresses = {k: checksum(v) for k, v in raw.items() if isinstance(v, str) and v.startswith("0x")}
    missing = [kind.contract for kind in KINDS if kind.contract not in addresses]
    if missing:
        raise ChainsyncError(
            "DEPLOYMENT_INCOMPLETE",
            f"the deployment file {path} has no address for {', '.join(missing)}",
        )
    return Deployment(addresses, raw.get("chainId"), {k: int(v) for k, v in raw.get("deploymentBlocks", {}).items()})


def load_abi(contract: str) -> list[dict[str, Any]]:
    return json.loads((ARTIFACTS / f"{contract}.json").read_text())["abi"]


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


def _signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_canonical_type(p) for p in item['inputs'])})"


@lru_cache(maxsize=65_536)
def checksum(address: str) -> str:
    """EIP-55 form; cached, since a chain's records name the same few creators again and again."""
    return to_checksum_address(address)


BlockParam = str | dict[str, str]  # a JSON-RPC block parameter: a number in hex, or {"blockHash": ...}


def _block_param(at: int | BlockParam) -> BlockParam:
    return hex(at) if isinstance(at, int) else at


def _to_json_value(abi_type: str) -> Callable[[Any], Any]:
    if abi_type.startswith(("uint", "int")):
        return str
    if abi_type == "address":
        return checksum
    return lambda v: v


_WORD = 32
_STRING, _ADDRESS, _BOOL, _UINT = range(4)  # the head word kinds the lean decoder reads


def _word_kind(abi_type: str) -> tuple[int, int] | None:
    """(kind, bits) of one head word of a flat tuple (bits: a uint's width), or None when eth_abi must do it."""
    if abi_type == "string":
        return _STRING, 0
    if abi_type == "address":
        return _ADDRESS, 0
    if abi_type == "bool":
        return _BOOL, 0
    if abi_type.startswith("uint"):
        return _UINT, int(abi_type[4:] or 256)
    return None


def make_decoder(types: tuple[str, ...]) -> Callable[[bytes], tuple[Any, ...]]:
    """Decodes return data of these types: a lean path for flat tuples of strings, uints,
    addresses and bools (the platform's getters), eth_abi for anything else. Built once per getter.

    The lean path is one loop over the head words with the checks eth_abi makes (no data past the end, clean
    padding, values within their type): a full sync decodes every entity, so it is kept free of a function
    call per word."""
    plan: list[tuple[int, int, int, int]] = []  # per head word: where it starts and ends, its kind, its bits
    for n, abi_type in enumerate(types):
        word = _word_kind(abi_type)
        if word is None:
            return lambda data: abi_decode(types, data)
        plan.append((n * _WORD, n * _WORD + _WORD, *word))
    head, padding = _WORD * len(types), bytes(12)

    def decode(data: bytes) -> tuple[Any, ...]:
        if len(data) < head:
            raise ValueError(f"return data is {len(data)} bytes, shorter than its {head}-byte head")
        values: list[Any] = []
        for at, end, kind, bits in plan:
            if kind == _UINT:
                value: Any = int.from_bytes(data[at:end], "big")
                if value >> bits:
                    raise ValueError(f"uint{bits} word at byte {at} out of range")
            elif kind == _STRING:
                offset = int.from_bytes(data[at:end], "big")
                length = int.from_bytes(data[offset : offset + _WORD], "big")
                padded_length = -(-length // _WORD) * _WORD
                padded = data[offset + _WORD : offset + _WORD + padded_length]
                if offset + _WORD > len(data) or len(padded) != padded_length or any(padded[length:]):
                    raise ValueError("string runs past the end of the return data or has dirty padding")
                value = padded[:length].decode("utf-8")
            elif kind == _ADDRESS:
                if data[at : at + 12] != padding:
                    raise ValueError("address word has non-zero padding")
                value = "0x" + data[at + 12 : end].hex()
            else:
                value = int.from_bytes(data[at:end], "big")
                if value > 1:
                    raise ValueError(f"bool word holds {value}")
                value = value == 1
            values.append(value)
        return tuple(values)

    return decode


@dataclass(frozen=True)
class EntityKind:
    """A record kind (server/kinds.py) with what its ABI says: topics, selectors, getter outputs, decoder."""

    declared: RecordKind
    topics: dict[str, tuple[str, int]]  # topic0 hex -> (event name, index of the id among the topics)
    created_topic: str  # topic0 of the event that creates an entity
    mutator_selectors: dict[str, str]  # 4-byte selector hex -> state-changing function whose first input is the id
    getter_selector: bytes
    counter_selector: bytes
    output_names: tuple[str, ...]
    output_types: tuple[str, ...]
    decode: Callable[[bytes], tuple[Any, ...]]
    to_json: tuple[Callable[[Any], Any], ...]  # per output: its decoded value as the record's JSON value

    @property
    def name(self) -> str:
        return self.declared.name

    @property
    def contract(self) -> str:
        return self.declared.contract

    def getter_call(self, address: str, entity_id: int, at: int | BlockParam) -> tuple[str, list[Any]]:
        """The getter's eth_call at block ``at``: a number, or a JSON-RPC block parameter (hex, {"blockHash"})."""
        # the one uint256 argument is its 32-byte big-endian word (OverflowError past 2**256 - 1)
        data = self.getter_selector + entity_id.to_bytes(_WORD, "big")
        return "eth_call", [{"to": address, "data": "0x" + data.hex()}, _block_param(at)]

    def counter_call(self, address: str, at: int | BlockParam) -> tuple[str, list[Any]]:
        return "eth_call", [{"to": address, "data": "0x" + self.counter_selector.hex()}, _block_param(at)]

    def decode_record(self, entity_id: int, raw_hex: str) -> dict[str, Any]:
        """The getter's return values as a record: {"id": "7", "titleCid": ..., ...}."""
        if raw_hex in ("0x", ""):
            raise ChainsyncError(
                "EMPTY_GETTER_RESPONSE",
                f"{self.contract}.{self.declared.getter}({entity_id}) returned no data: "
                "is the deployment file for this chain?",
            )
        values = self.decode(bytes.fromhex(raw_hex[2:]))
        record: dict[str, Any] = {"id": str(entity_id)}
        for name, to_json, value in zip(self.output_names, self.to_json, values):
            record[name] = to_json(value)
        return record


def _id_topic(event: dict[str, Any], id_argument: str) -> int | None:
    """Where an event's id argument is among its topics (topic 0 is the signature), if it is indexed there."""
    indexed = [p["name"] for p in event["inputs"] if p.get("indexed")]
    return indexed.index(id_argument) + 1 if id_argument in indexed else None


def build_kind(kind: RecordKind) -> EntityKind:
    """The EntityKind of a declared record kind, from its contract's ABI."""
    abi = load_abi(kind.contract)
    topics: dict[str, tuple[str, int]] = {}
    mutators: dict[str, str] = {}
    for item in abi:
        if item["type"] == "event" and (at := _id_topic(item, kind.id_argument)) is not None:
            topics["0x" + keccak(text=_signature(item)).hex()] = (item["name"], at)
        first = item.get("inputs") or [{}]
        if item["type"] == "function" and item.get("stateMutability") not in ("view", "pure"):
            if first[0].get("type") == "uint256":
                mutators["0x" + function_signature_to_4byte_selector(_signature(item)).hex()] = item["name"]
    getter = next((i for i in abi if i["type"] == "function" and i["name"] == kind.getter), None)
    if getter is None or kind.created_event not in {event for event, _ in topics.values()}:
        raise RuntimeError(f"the {kind.contract} ABI lacks {kind.getter} or {kind.created_event}({kind.id_argument})")
    output_types = tuple(_canonical_type(o) for o in getter["outputs"])
    return EntityKind(
        declared=kind,
        topics=topics,
        created_topic=next(t for t, (event, _) in topics.items() if event == kind.created_event),
        mutator_selectors=mutators,
        getter_selector=function_signature_to_4byte_selector(_signature(getter)),
        counter_selector=function_signature_to_4byte_selector(f"{kind.counter}()"),
        output_names=tuple(o["name"] for o in getter["outputs"]),
        output_types=output_types,
        decode=make_decoder(output_types),
        to_json=tuple(_to_json_value(t) for t in output_types),
    )


def entity_kinds() -> dict[str, EntityKind]:
    """Every declared record kind with its ABI, keyed by name."""
    return {kind.name: build_kind(kind) for kind in KINDS}
