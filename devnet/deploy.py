"""Deploying the four contracts.

Owns: sending the creation transactions (AuthRegistry first, then Proposals,
Petitions and Reports with its address, each in its own block, from account
0), checking their receipts, and the deployment file: a flat JSON map of
contract name to EIP-55 address, with ``chainId`` and ``deploymentBlocks``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from devnet.artifacts import CONTRACT_NAMES, deploy_data
from devnet.rpc import Rpc

DEPLOY_GAS = 6_000_000


def _mine_one(rpc: Rpc, tx: dict[str, Any]) -> dict[str, Any]:
    """Send tx, mine one block, return the receipt (raises if the creation failed)."""
    tx_hash = rpc.call("eth_sendTransaction", tx)
    rpc.call("evm_mine")
    receipt = rpc.call("eth_getTransactionReceipt", tx_hash)
    if receipt is None or receipt["status"] != "0x1" or not receipt.get("contractAddress"):
        raise RuntimeError(f"deployment transaction {tx_hash} failed: {receipt}")
    return receipt


def deploy(rpc_url: str, path: Path | None = None, *, deployer: str | None = None) -> dict[str, Any]:
    """Deploy AuthRegistry, then Proposals, Petitions and Reports; return the deployment map
    and write it to `path` when given.

    Mines one block per contract (automine is switched off meanwhile and restored).
    """
    with Rpc(rpc_url) as rpc:
        deployer = deployer or rpc.call("eth_accounts")[0]
        automine = rpc.call("anvil_getAutomine")
        rpc.call("evm_setAutomine", False)
        try:
            deployment: dict[str, Any] = {}
            blocks: dict[str, int] = {}
            for name in CONTRACT_NAMES:
                ctor_args = () if name == "AuthRegistry" else (deployment["AuthRegistry"],)
                tx = {"from": deployer, "data": deploy_data(name, *ctor_args), "gas": hex(DEPLOY_GAS)}
                receipt = _mine_one(rpc, tx)
                deployment[name] = to_checksum_address(receipt["contractAddress"])
                blocks[name] = int(receipt["blockNumber"], 16)
            deployment["chainId"] = int(rpc.call("eth_chainId"), 16)
            deployment["deploymentBlocks"] = blocks
        finally:
            rpc.call("evm_setAutomine", automine)
    if path is not None:
        write_deployment(deployment, path)
    return deployment


def write_deployment(deployment: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(deployment, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load_deployment(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
