"""Seeding: sending a scenario to the chain and recording what it wrote.

Owns: the block timestamps while seeding (a fixed interval, so block n is
mined at a known time), sending each busy block's transactions as one
JSON-RPC array of eth_sendTransaction (from anvil's unlocked accounts, with
explicit nonce and gas) and mining it with the empty blocks after it in one
anvil_mine, then checking every receipt against the model (success, block,
position, number of logs) and building ``Expected`` from the model plus the
chain facts (transaction hashes, log indexes).
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from devnet.anvil import BLOCK_INTERVAL_S
from devnet.artifacts import encode_call
from devnet.model import CREATORS, Expected, entity_record
from devnet.rpc import Rpc
from devnet.scenario import Scenario, build_scenario, gas_for, is_silent

RECEIPT_BATCH = 500
# anvil keeps the order of an array batch of eth_sendTransaction up to 64
# calls; past that it puts the calls after the 63rd in reverse (measured with
# anvil 1.7.1, see docs/devnet.md). A busy block is sent in arrays of at most
# this many, one after another, so the block holds its transactions in plan
# order (the receipts check it).
SEND_BATCH = 50


class SeedError(RuntimeError):
    """The chain did not do what the scenario planned."""


def seed(rpc_url: str, deployment: dict[str, Any], scale: str = "demo") -> Expected:
    """Seed the deployed contracts with the `scale` scenario; return the seeder's own record.

    The node must be anvil with at least 30 unlocked accounts, account 0 being
    the AuthRegistry owner. Automine is off while seeding and restored after.
    """
    with Rpc(rpc_url, timeout_s=300) as rpc:
        accounts = [to_checksum_address(a) for a in rpc.call("eth_accounts")]
        chain_id = int(rpc.call("eth_chainId"), 16)
        head = int(rpc.call("eth_blockNumber"), 16)
        head_ts = int(rpc.call("eth_getBlockByNumber", hex(head), False)["timestamp"], 16)
        rpc.call("anvil_setBlockTimestampInterval", BLOCK_INTERVAL_S)
        base_ts = head_ts - BLOCK_INTERVAL_S * head  # block n > head is mined at base_ts + interval * n
        scenario = build_scenario(scale, accounts, start_block=head + 1, genesis_ts=base_ts, interval=BLOCK_INTERVAL_S)
        automine = rpc.call("anvil_getAutomine")
        rpc.call("evm_setAutomine", False)
        try:
            hashes = _send(rpc, scenario, deployment, head)
        finally:
            rpc.call("evm_setAutomine", automine)
        _check_receipts(rpc, scenario, deployment, hashes)
        new_head = int(rpc.call("eth_blockNumber"), 16)
        if new_head != scenario.head:
            raise SeedError(f"the chain ends at block {new_head}, the scenario at {scenario.head}")
    return _expected(scenario, chain_id, base_ts)


def _send(rpc: Rpc, scenario: Scenario, deployment: dict[str, Any], head: int) -> list[str]:
    """Send every planned transaction and mine the planned blocks; return the hashes in order."""
    senders = sorted({a.tx.sender for a in scenario.txs})
    counts = rpc.batch([("eth_getTransactionCount", (s, "latest")) for s in senders])
    nonces = {s: int(c, 16) for s, c in zip(senders, counts)}
    hashes: list[str] = []
    mined_to = head
    for i, block in enumerate(scenario.blocks):
        if block.number != mined_to + 1:
            raise SeedError(f"planned block {block.number} follows block {mined_to}: blocks out of order")
        calls = []
        for applied in block.txs:
            tx = applied.tx
            calls.append(
                (
                    "eth_sendTransaction",
                    (
                        {
                            "from": tx.sender,
                            "to": deployment[tx.contract],
                            "data": encode_call(tx.contract, tx.function, tx.args),
                            "gas": hex(gas_for(tx)),
                            "nonce": hex(nonces[tx.sender]),
                        },
                    ),
                )
            )
            nonces[tx.sender] += 1
        for start in range(0, len(calls), SEND_BATCH):
            hashes += rpc.batch(calls[start : start + SEND_BATCH])
        # This block, and the empty ones up to the next busy block (or the scenario's head).
        until = scenario.blocks[i + 1].number - 1 if i + 1 < len(scenario.blocks) else scenario.head
        rpc.call("anvil_mine", hex(until - mined_to))
        mined_to = until
    return hashes


def _check_receipts(rpc: Rpc, scenario: Scenario, deployment: dict[str, Any], hashes: list[str]) -> None:
    """Each transaction succeeded where planned, with as many logs as the model says; record
    transaction hashes and the creating events' log indexes in the model."""
    planned = [
        (block.number, position, applied) for block in scenario.blocks for position, applied in enumerate(block.txs)
    ]
    for start in range(0, len(hashes), RECEIPT_BATCH):
        chunk = hashes[start : start + RECEIPT_BATCH]
        receipts = rpc.batch([("eth_getTransactionReceipt", (h,)) for h in chunk])
        for tx_hash, receipt, (number, position, applied) in zip(
            chunk, receipts, planned[start : start + RECEIPT_BATCH]
        ):
            tx = applied.tx
            where = f"{tx.contract}.{tx.function}{tx.args!r} from {tx.sender} ({tx_hash})"
            if receipt is None:
                raise SeedError(f"no receipt for {where}: not mined")
            if receipt["status"] != "0x1":
                raise SeedError(f"{where} reverted on chain but the model accepted it")
            if (int(receipt["blockNumber"], 16), int(receipt["transactionIndex"], 16)) != (number, position):
                raise SeedError(
                    f"{where} was mined at block {int(receipt['blockNumber'], 16)} index "
                    f"{int(receipt['transactionIndex'], 16)}, planned at {number} index {position}"
                )
            logs = receipt["logs"]
            if len(logs) != applied.events or (is_silent(tx) and logs):
                raise SeedError(f"{where} emitted {len(logs)} logs, the model says {applied.events}")
            address = deployment[tx.contract].lower()
            if any(log["address"].lower() != address for log in logs):
                raise SeedError(f"{where} has a log from another address")
            if applied.change is not None:
                applied.change.tx_hash = tx_hash
            if applied.entity is not None and tx.function == CREATORS[tx.contract]:
                applied.entity.created_tx_hash = tx_hash
                applied.entity.created_log_index = int(logs[0]["logIndex"], 16)


def _expected(scenario: Scenario, chain_id: int, base_ts: int) -> Expected:
    platform = scenario.platform
    txs = scenario.txs

    def records(kind: str) -> dict[int, dict[str, Any]]:
        return {i: entity_record(e) for i, e in platform.entities[kind].items()}

    return Expected(
        scale=scenario.scale,
        chain_id=chain_id,
        first_block=scenario.start_block,
        head_block=scenario.head,
        genesis_timestamp=base_ts,
        block_interval=BLOCK_INTERVAL_S,
        owner=platform.owner,
        admins=sorted(platform.admins),
        users=sorted(platform.users),
        proposals=records("proposals"),
        petitions=records("petitions"),
        reports=records("reports"),
        counts={
            "proposals": platform.count("proposals"),
            "petitions": platform.count("petitions"),
            "reports": platform.count("reports"),
            "transactions": len(txs),
            "events": sum(a.events for a in txs),
            "silentChanges": sum(1 for a in txs if is_silent(a.tx)),
            "busyBlocks": len(scenario.blocks),
        },
    )


def rebuild_scenario(expected: Expected, accounts: list[str]) -> Scenario:
    """The scenario that produced `expected`, planned again (it is deterministic).

    accounts: the node's eth_accounts, EIP-55. With platform_at() it gives the
    model's state at any block, e.g. to check getters at a past block.
    """
    return build_scenario(
        expected.scale,
        accounts,
        start_block=expected.first_block,
        genesis_ts=expected.genesis_timestamp,
        interval=expected.block_interval,
    )
