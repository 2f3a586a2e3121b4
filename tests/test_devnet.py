"""The devnet: built once, reloaded fast, seeded as the seeder's own record says.

Uses the session `devnet` (demo scale, loaded from the saved state under
.devnet/). Everything is read straight from anvil over JSON-RPC.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address

from devnet.anvil import AnvilError, start_anvil
from devnet.artifacts import canonical_type, encode_call, event_topic, load_abi
from devnet.command import SavedChain, free_port, open_devnet
from devnet.model import CREATED_EVENTS, KINDS, SILENT, UINT256_MAX
from devnet.rpc import Rpc, RpcError
from devnet.scenario import SCALES, platform_at
from devnet.seed import rebuild_scenario
from tests.conftest import DEVNET_DIR, REPO

GETTERS = {"proposals": ("Proposals", "getProposal"), "petitions": ("Petitions", "getPetition"),
           "reports": ("Reports", "getReport")}  # fmt: skip
COUNTERS = {"proposals": "proposalCount", "petitions": "petitionCount", "reports": "reportCount"}


def _outputs(contract: str, function: str) -> list[dict]:
    return next(i for i in load_abi(contract) if i.get("name") == function)["outputs"]


def read_entities(rpc: Rpc, deployment: dict, kind: str, ids: list[int], block: str = "latest") -> dict[int, dict]:
    """Every getter field of the given entities at `block`, as Python values (addresses EIP-55)."""
    contract, getter = GETTERS[kind]
    outputs = _outputs(contract, getter)
    types = [canonical_type(o) for o in outputs]
    records = {}
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        calls = [("eth_call", ({"to": deployment[contract], "data": encode_call(contract, getter, (i,))}, block))
                 for i in chunk]  # fmt: skip
        for entity_id, raw in zip(chunk, rpc.batch(calls)):
            values = abi_decode(types, bytes.fromhex(raw[2:]))
            records[entity_id] = {
                o["name"]: (to_checksum_address(v) if o["type"] == "address" else v) for o, v in zip(outputs, values)
            }
    return records


def getter_fields(record: dict, kind: str) -> dict:
    contract, getter = GETTERS[kind]
    return {o["name"]: record[o["name"]] for o in _outputs(contract, getter)}


def count_at(rpc: Rpc, deployment: dict, kind: str, block: str = "latest") -> int:
    contract = GETTERS[kind][0]
    return int(
        rpc.call("eth_call", {"to": deployment[contract], "data": encode_call(contract, COUNTERS[kind], ())}, block), 16
    )


@pytest.fixture(scope="module")
def rpc(devnet):
    with Rpc(devnet.url) as client:
        yield client


def test_the_demo_chain_has_at_least_110_of_each_entity(devnet, rpc) -> None:
    expected = devnet.expected
    for kind in GETTERS:
        assert len(expected.entities(kind)) >= 110
        assert count_at(rpc, devnet.deployment, kind) == len(expected.entities(kind))
    assert int(rpc.call("eth_blockNumber"), 16) == expected.head_block >= 2000
    assert int(rpc.call("eth_chainId"), 16) == devnet.deployment["chainId"] == 31337
    for name in ("AuthRegistry", "Proposals", "Petitions", "Reports"):
        assert devnet.deployment[name] == to_checksum_address(devnet.deployment[name])
        assert rpc.call("eth_getCode", devnet.deployment[name], "latest") not in ("0x", "0x0")


def test_expected_is_what_every_getter_returns_at_the_head(devnet, rpc) -> None:
    for kind in GETTERS:
        expected = devnet.expected.entities(kind)
        on_chain = read_entities(rpc, devnet.deployment, kind, sorted(expected))
        for entity_id, record in expected.items():
            assert getter_fields(record, kind) == on_chain[entity_id], (kind, entity_id)


def test_the_seed_covers_the_edge_cases(devnet) -> None:
    e = devnet.expected
    proposals, petitions, reports = e.proposals.values(), e.petitions.values(), e.reports.values()
    big = [p["categoryId"] for p in proposals] + [p["expiredDate"] for p in proposals] + \
        [p["signaturesRequired"] for p in petitions]  # fmt: skip
    assert any(2**53 < v < 2**64 for v in big) and any(2**64 < v < UINT256_MAX - 10 for v in big)
    assert UINT256_MAX in big and UINT256_MAX - 1 in big
    assert any(p["completed"] for p in petitions) and any(p["removed"] for p in petitions)
    assert any(p["removed"] for p in proposals) and any(not p["activeStatus"] for p in proposals)
    assert any(r["resolved"] for r in reports) and any(r["removed"] for r in reports)
    assert any(p["descriptionInDetailsCid"] == "" for p in proposals)
    assert any(len(p["descriptionInDetailsCid"].encode()) > 256 for p in proposals)
    assert any(not p["titleCid"].isascii() for p in proposals)
    functions = {
        (kind, c["function"]) for kind in GETTERS for r in e.entities(kind).values() for c in r["changedBlocks"]
    }
    for contract, function in SILENT:
        assert (KINDS[contract], function) in functions


def test_each_silent_mutator_changes_an_old_entity_inside_the_recent_block_window(devnet) -> None:
    """For every event-less mutator there is a block that holds only that change of its entity,
    long after the entity was created, where anvil still has the block state."""
    window_start = devnet.historical_state_from
    for contract, function in SILENT:
        kind = KINDS[contract]
        found = False
        for record in devnet.expected.entities(kind).values():
            changes = record["changedBlocks"]
            for change in changes:
                same_block = [c for c in changes if c["block"] == change["block"]]
                if (change["function"] == function and len(same_block) == 1 and change["block"] >= window_start
                        and change["block"] - record["createdBlock"] > 500):  # fmt: skip
                    found = True
        assert found, (contract, function)


def test_event_less_mutators_emit_no_logs_and_the_others_do(devnet, rpc) -> None:
    changes = [(kind, r["id"], c) for kind in GETTERS for r in devnet.expected.entities(kind).values()
               for c in r["changedBlocks"]]  # fmt: skip
    assert sum(not c["emitted"] for _, _, c in changes) >= 50
    for start in range(0, len(changes), 200):
        chunk = changes[start : start + 200]
        receipts = rpc.batch([("eth_getTransactionReceipt", (c["txHash"],)) for _, _, c in chunk])
        txs = rpc.batch([("eth_getTransactionByHash", (c["txHash"],)) for _, _, c in chunk])
        for (kind, entity_id, change), receipt, tx in zip(chunk, receipts, txs):
            contract = GETTERS[kind][0]
            assert receipt["status"] == "0x1"
            assert int(receipt["blockNumber"], 16) == change["block"]
            assert to_checksum_address(tx["to"]) == devnet.deployment[contract]
            function = next(i for i in load_abi(contract) if i.get("name") == change["function"])
            selector = encode_call(contract, change["function"], _zero_args(function))[:10]
            assert tx["input"][:10] == selector
            assert int(tx["input"][10:74], 16) == entity_id or change["function"].startswith("create")
            if (contract, change["function"]) in SILENT:
                assert not change["emitted"] and receipt["logs"] == [], change
            else:
                assert change["emitted"] and receipt["logs"], change


def _zero_args(function: dict) -> tuple:
    return tuple(
        {"string": "", "bool": False, "address": "0x" + "00" * 20}.get(p["type"], 0) for p in function["inputs"]
    )


def test_logs_over_the_whole_chain_match_the_creation_provenance(devnet, rpc) -> None:
    deployment, expected = devnet.deployment, devnet.expected
    addresses = [deployment[n] for n in ("AuthRegistry", "Proposals", "Petitions", "Reports")]
    logs = rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(expected.head_block), "address": addresses})
    assert len(logs) == expected.counts["events"]
    for contract, kind in KINDS.items():
        topic = event_topic(contract, CREATED_EVENTS[contract])
        created = {int(log["topics"][1], 16): log for log in logs
                   if log["address"].lower() == deployment[contract].lower() and log["topics"][0] == topic}  # fmt: skip
        assert sorted(created) == sorted(expected.entities(kind))
        for entity_id, record in expected.entities(kind).items():
            log = created[entity_id]
            assert int(log["blockNumber"], 16) == record["createdBlock"]
            assert log["transactionHash"] == record["createdTxHash"]
            assert int(log["logIndex"], 16) == record["createdLogIndex"]
            assert to_checksum_address("0x" + log["topics"][2][-40:]) == record["creator"]


def test_blocks_and_timestamps_survive_the_saved_state(devnet, rpc) -> None:
    e = devnet.expected
    numbers = [0, 1, e.first_block, e.head_block // 2, e.head_block]
    blocks = rpc.batch([("eth_getBlockByNumber", (hex(n), False)) for n in numbers])
    for number, block in zip(numbers, blocks):
        assert block is not None and int(block["number"], 16) == number
        assert int(block["timestamp"], 16) == e.genesis_timestamp + e.block_interval * number
    proposal = e.proposals[1]
    assert proposal["createdAt"] == e.genesis_timestamp + e.block_interval * proposal["createdBlock"]


def test_getters_at_past_blocks_in_the_window_match_the_model_then(devnet, rpc) -> None:
    """eth_call at old blocks still works after the state was saved and loaded, and gives
    the state the seeder's model had at that block (replayed from the same scenario)."""
    e = devnet.expected
    accounts = [to_checksum_address(a) for a in rpc.call("eth_accounts")]
    scenario = rebuild_scenario(e, accounts)
    assert scenario.head == e.head_block
    busy = [b.number for b in scenario.blocks if b.number >= devnet.historical_state_from]
    picks = sorted({devnet.historical_state_from, busy[0], busy[len(busy) // 2], busy[-1] - 1, e.head_block})
    for block in picks:
        platform = platform_at(scenario, block)
        for kind in GETTERS:
            model = platform.entities[kind]
            assert count_at(rpc, devnet.deployment, kind, hex(block)) == len(model)
            on_chain = read_entities(rpc, devnet.deployment, kind, sorted(model), hex(block))
            for entity_id, entity in model.items():
                assert entity.fields == on_chain[entity_id], (block, kind, entity_id)


def test_blocks_older_than_the_window_have_no_state(devnet, rpc) -> None:
    """anvil 1.7.1 keeps the last `serve_history` block states (docs/devnet.md); older
    eth_calls fail loudly rather than answer wrongly."""
    older = devnet.historical_state_from - 10
    with pytest.raises(RpcError) as info:
        count_at(rpc, devnet.deployment, "proposals", hex(older))
    assert "BlockOutOfRange" in info.value.error_message


def test_a_second_start_loads_the_saved_state_in_seconds(devnet) -> None:
    saved = SavedChain(DEVNET_DIR, "demo")
    assert saved.is_current()
    before = saved.state.stat().st_mtime_ns
    t0 = time.monotonic()
    with open_devnet(DEVNET_DIR, "demo") as second, Rpc(second.url) as rpc:
        elapsed = time.monotonic() - t0
        assert int(rpc.call("eth_blockNumber"), 16) == devnet.expected.head_block
        assert second.deployment == devnet.deployment
    assert saved.state.stat().st_mtime_ns == before, "the saved state was rebuilt"
    assert elapsed < 15, f"loading the saved chain took {elapsed:.1f} s"


def test_a_taken_port_is_named_in_the_error(devnet, tmp_path) -> None:
    with pytest.raises(AnvilError, match=str(devnet.anvil.port)):
        start_anvil(devnet.anvil.port, state_path=None, workdir=tmp_path)


def test_the_devnet_command_serves_writes_the_deployment_file_and_stops_on_sigterm(tmp_path) -> None:
    workdir = tmp_path / "devnet"
    workdir.mkdir()
    (workdir / "demo").symlink_to(DEVNET_DIR / "demo")  # reuse the saved chain
    port = free_port()
    code = f"import sys; from pathlib import Path; from devnet.command import run_devnet; " \
           f"sys.exit(run_devnet(port={port}, workdir=Path({str(workdir)!r})))"  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "expected data" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output, output
        assert str(workdir / "deployment.json") in output
        with Rpc(f"http://127.0.0.1:{port}") as rpc:
            assert int(rpc.call("eth_chainId"), 16) == 31337
        assert (workdir / "deployment.json").is_file() and (workdir / "expected.json").is_file()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    with pytest.raises(httpx.TransportError):  # anvil is gone too
        Rpc(f"http://127.0.0.1:{port}", timeout_s=1).call("eth_chainId")


def test_the_bench_scale_is_planned_with_enough_events_and_blocks() -> None:
    """Planning only (building the bench chain is for the benchmarks)."""
    accounts = [to_checksum_address(f"0x{i + 1:040x}") for i in range(30)]
    from devnet.scenario import build_scenario

    scenario = build_scenario("bench", accounts, start_block=5, genesis_ts=0, interval=12)
    assert sum(a.events for a in scenario.txs) >= 20_000
    assert scenario.head >= 50_000
    assert SCALES["bench"].build_history == 0
