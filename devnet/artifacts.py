"""The compiled contracts.

Owns: finding and reading ``contracts/artifacts/<Name>.json`` (written by
``node contracts/compile.mjs``), and building deployment and call data from an
artifact's ABI. The server reads its ABIs through ``load_abi`` too.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO / "contracts" / "artifacts"
CONTRACT_NAMES = ("AuthRegistry", "Proposals", "Petitions", "Reports")


@cache
def _read(name: str) -> str:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        return path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no artifact {path}; run `node contracts/compile.mjs` (contracts: {', '.join(CONTRACT_NAMES)})"
        ) from None


def load_artifact(name: str) -> dict[str, Any]:
    """The artifact as written by compile.mjs: contractName, abi, bytecode, compiler."""
    return json.loads(_read(name))


def load_abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name)["abi"]


def canonical_type(param: dict[str, Any]) -> str:
    """The ABI type as it appears in a signature (tuples spelled out)."""
    if param["type"].startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][len('tuple') :]}"
    return param["type"]


def signature(item: dict[str, Any]) -> str:
    """`name(type,type)` of an ABI function or event entry."""
    return f"{item['name']}({','.join(canonical_type(p) for p in item['inputs'])})"


def _function(name: str, function: str) -> dict[str, Any]:
    matches = [i for i in load_abi(name) if i["type"] == "function" and i["name"] == function]
    if len(matches) != 1:
        raise KeyError(f"{name} has {len(matches)} functions named {function!r}")
    return matches[0]


def encode_call(name: str, function: str, args: Sequence[Any]) -> str:
    """Call data (0x hex) for `function` of contract `name` with `args`."""
    item = _function(name, function)
    types = [canonical_type(p) for p in item["inputs"]]
    selector = keccak(text=signature(item))[:4]
    return "0x" + (selector + abi_encode(types, list(args))).hex()


def deploy_data(name: str, *constructor_args: Any) -> str:
    """Creation code (0x hex) of contract `name` with its constructor arguments appended."""
    artifact = load_artifact(name)
    ctor = next((i for i in artifact["abi"] if i["type"] == "constructor"), {"inputs": []})
    types = [canonical_type(p) for p in ctor["inputs"]]
    return artifact["bytecode"] + abi_encode(types, list(constructor_args)).hex()


def event_topic(name: str, event: str) -> str:
    """topic0 (0x hex) of `event` in contract `name`."""
    item = next(i for i in load_abi(name) if i["type"] == "event" and i["name"] == event)
    return "0x" + keccak(text=signature(item)).hex()
