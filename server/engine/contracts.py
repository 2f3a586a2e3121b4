"""What the sync knows of the civic platform's contracts.

Owns: reading the deployment file (name -> address, optional chainId and
deploymentBlocks), the ABIs from contracts/artifacts/, and, per entity kind,
the event topics that touch an entity, its getter's call encoding and the
decoding of its return values into a record (uint256 as decimal strings,
addresses EIP-55). Built once per process; decoding is plain eth_abi on the
raw hex, without web3's formatters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from server.errors import ChainsyncError

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
    missing = [name for name in ("Proposals", "Petitions", "Reports") if name not in addresses]
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


def _to_json_value(abi_type: str) -> Callable[[Any], Any]:
    if abi_type.startswith(("uint", "int")):
        return str
    if abi_type == "address":
        return checksum
    return lambda v: v


_WORD = 32


def _word(data: bytes, at: int) -> bytes:
    word = data[at : at + _WORD]
    if len(word) != _WORD:
        raise ValueError(f"return data ends inside the word at byte {at}")
    return word


def _word_decoder(abi_type: str) -> Callable[[bytes, int], Any] | None:
    """A decoder for one head word of a flat tuple, or None when eth_abi must do it."""
    if abi_type == "string":

        def string(data: bytes, at: int) -> str:
            offset = int.from_bytes(_word(data, at), "big")
            length = int.from_bytes(_word(data, offset), "big")
            padded = data[offset + _WORD : offset + _WORD + -(-length // _WORD) * _WORD]
            if len(padded) != -(-length // _WORD) * _WORD or any(padded[length:]):
                raise ValueError("string runs past the end of the return data or has dirty padding")
            return padded[:length].decode("utf-8")

        return string
    if abi_type == "bool":

        def boolean(data: bytes, at: int) -> bool:
            value = int.from_bytes(_word(data, at), "big")
            if value > 1:
                raise ValueError(f"bool word holds {value}")
            return value == 1

        return boolean
    if abi_type == "address":

        def address(data: bytes, at: int) -> str:
            word = _word(data, at)
            if word[:12] != bytes(12):
                raise ValueError("address word has non-zero padding")
            return "0x" + word[12:].hex()

        return address
    if abi_type.startswith("uint"):
        bits = int(abi_type[4:] or 256)

        def uint(data: bytes, at: int) -> int:
            value = int.from_bytes(_word(data, at), "big")
            if value >> bits:
                raise ValueError(f"{abi_type} word out of range")
            return value

        return uint
    return None


def make_decoder(types: tuple[str, ...]) -> Callable[[bytes], tuple[Any, ...]]:
    """Decodes return data of these types: a lean path for flat tuples of strings, uints,
    addresses and bools (the platform's getters), eth_abi for anything else. Built once per getter."""
    words = [_word_decoder(t) for t in types]
    if any(w is None for w in words):
        return lambda data: abi_decode(types, data)
    head = _WORD * len(types)

    def decode(data: bytes) -> tuple[Any, ...]:
        if len(data) < head:
            raise ValueError(f"return data is {len(data)} bytes, shorter than its {head}-byte head")
        return tuple(word(data, n * _WORD) for n, word in enumerate(words))

    return decode


@dataclass(frozen=True)
class EntityKind:
    """One kind of record (proposals, petitions, reports) and how to read it."""

    name: str  # "proposals": the result's key
    contract: str  # "Proposals": the deployment file's key
    created_event: str
    counter: str
    getter: str
    topics: dict[str, str]  # topic0 hex -> event name, for every event with the id first
    mutator_selectors: dict[str, str]  # 4-byte selector hex -> function taking the id first
    getter_selector: bytes
    counter_selector: bytes
    output_names: tuple[str, ...]
    output_types: tuple[str, ...]
    decode: Callable[[bytes], tuple[Any, ...]]

    @property
    def created_topic(self) -> str:
        return next(t for t, name in self.topics.items() if name == self.created_event)

    def getter_call(self, address: str, entity_id: int, block: int) -> tuple[str, list[Any]]:
        data = self.getter_selector + abi_encode(["uint256"], [entity_id])
        return "eth_call", [{"to": address, "data": "0x" + data.hex()}, hex(block)]

    def counter_call(self, address: str, block: int) -> tuple[str, list[Any]]:
        return "eth_call", [{"to": address, "data": "0x" + self.counter_selector.hex()}, hex(block)]

    def decode_record(self, entity_id: int, raw_hex: str) -> dict[str, Any]:
        """The getter's return values as a record: {"id": "7", "titleCid": ..., ...}."""
        if raw_hex in ("0x", ""):
            raise ChainsyncError(
                "EMPTY_GETTER_RESPONSE",
                f"{self.contract}.{self.getter}({entity_id}) returned no data: is the deployment file for this chain?",
            )
        values = self.decode(bytes.fromhex(raw_hex[2:]))
        record: dict[str, Any] = {"id": str(entity_id)}
        for name, abi_type, value in zip(self.output_names, self.output_types, values):
            record[name] = _to_json_value(abi_type)(value)
        return record


def build_kind(name: str, contract: str, created_event: str, counter: str, getter: str) -> EntityKind:
    abi = load_abi(contract)
    topics = {}
    mutators = {}
    getter_item = None
    for item in abi:
        first = item.get("inputs", [{}])[0] if item.get("inputs") else {}
        if item["type"] == "event" and first.get("type") == "uint256" and first.get("indexed"):
            topics["0x" + keccak(text=_signature(item)).hex()] = item["name"]
        if item["type"] == "function" and item.get("stateMutability") not in ("view", "pure"):
            if first.get("type") == "uint256":
                mutators["0x" + function_signature_to_4byte_selector(_signature(item)).hex()] = item["name"]
        if item["type"] == "function" and item["name"] == getter:
            getter_item = item
    if getter_item is None or created_event not in topics.values():
        raise RuntimeError(f"the {contract} ABI lacks {getter} or {created_event}")
    return EntityKind(
        name=name,
        contract=contract,
        created_event=created_event,
        counter=counter,
        getter=getter,
        topics=topics,
        mutator_selectors=mutators,
        getter_selector=function_signature_to_4byte_selector(_signature(getter_item)),
        counter_selector=function_signature_to_4byte_selector(f"{counter}()"),
        output_names=tuple(o["name"] for o in getter_item["outputs"]),
        output_types=tuple(_canonical_type(o) for o in getter_item["outputs"]),
        decode=make_decoder(tuple(_canonical_type(o) for o in getter_item["outputs"])),
    )


def entity_kinds() -> dict[str, EntityKind]:
    """The three kinds the platform has, keyed by result name."""
    return {
        "proposals": build_kind("proposals", "Proposals", "ProposalCreated", "proposalCount", "getProposal"),
        "petitions": build_kind("petitions", "Petitions", "PetitionCreated", "petitionCount", "getPetition"),
        "reports": build_kind("reports", "Reports", "ReportCreated", "reportCount", "getReport"),
    }
