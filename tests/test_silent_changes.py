"""State changed by calls that emit no event is in the result.

For each event-less mutator the seed used, pick a block where only that call
touched its entity, sync exactly that block through gRPC, and check that the
entity is in the result with the state the getter shows. Both strategies
(trace_filter and the block scan) find it; with the scan switched off it is
missed, which is why it exists.
"""

from __future__ import annotations

import json
import time

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from devnet.command import open_devnet
from devnet.rpc import Rpc, RpcError
from tests.fault_proxy import FaultProxy, Faults
from tests.processes import REPO, grpc_server
from tests.remote_proxy import Limits, RemoteProxy
from tests.stack import TERMINAL, wait_for_state, wait_until

KIND_TYPES = {"proposals": jobs_pb2.JOB_TYPE_PROPOSALS_SYNC, "reports": jobs_pb2.JOB_TYPE_REPORTS_SYNC}


def silent_only_blocks(expected, readable_from: int) -> list[tuple[str, int, int, str]]:
    """(kind, entity id, block, function) where the entity's only change in that block emitted no event;
    only blocks from readable_from, where the devnet still answers eth_call (docs/devnet.md)."""
    found = {}
    for kind in KIND_TYPES:
        for entity_id, entity in expected.entities(kind).items():
            by_block: dict[int, list[dict]] = {}
            for change in entity["changedBlocks"]:
                by_block.setdefault(change["block"], []).append(change)
            for block, changes in by_block.items():
                if block >= readable_from and all(not c["emitted"] for c in changes):
                    found.setdefault(changes[0]["function"], (kind, entity_id, block, changes[0]["function"]))
    return list(found.values())


def sync_block(addr: str, kind: str, block: int) -> jobs_pb2.SyncResult:
    with grpc.insecure_channel(addr) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        job_id = stub.StartSync(
            jobs_pb2.StartSyncRequest(from_block=block, to_block=block, type=KIND_TYPES[kind])
        ).job_id
        job = wait_for_state(stub, job_id, TERMINAL)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job
        return stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))


@pytest.mark.parametrize("strategy", ["auto", "blocks", "off"])
def test_event_less_changes_are_found(devnet, tmp_path, strategy: str) -> None:
    cases = silent_only_blocks(devnet.expected, devnet.historical_state_from)
    functions = {c[3] for c in cases}
    assert {"removeVote", "extendProposalDeadline", "reopenReport", "removeReport"} <= functions, functions
    with grpc_server(
        rpc_url=devnet.url,
        deployment_path=devnet.deployment_path,
        db=tmp_path / "j.db",
        extra_env={"CHAINSYNC_SILENT_CHANGES": strategy},
    ) as server:
        for kind, entity_id, block, function in cases:
            result = sync_block(server.addr, kind, block)
            ids = [int(r.id) for r in getattr(result, kind)]
            if strategy == "off":
                assert entity_id not in ids, (function, "only an event-less call touched it")
            else:
                assert entity_id in ids, (function, kind, entity_id, block)
                record = next(r for r in getattr(result, kind) if int(r.id) == entity_id)
                assert not record.HasField("created"), "created outside the one-block range"


def test_auto_on_a_node_without_traces_asks_once_says_so_once_and_no_job_pays_a_probe(devnet, tmp_path) -> None:
    """The server probes trace_filter when it starts; its jobs read blocks' transactions without asking again."""
    cases = silent_only_blocks(devnet.expected, devnet.historical_state_from)
    with (
        FaultProxy(devnet.url, Faults(unsupported=("trace_filter",))) as proxy,
        grpc_server(
            rpc_url=proxy.url,
            deployment_path=devnet.deployment_path,
            db=tmp_path / "j.db",
            extra_env={"CHAINSYNC_SILENT_CHANGES": "auto", "CHAINSYNC_LOG_FORMAT": "json"},
        ) as server,
    ):
        for kind, entity_id, block, function in cases[:3]:
            result = sync_block(server.addr, kind, block)
            assert entity_id in [int(r.id) for r in getattr(result, kind)], (function, "found from the blocks")
        assert proxy.unsupported_asked == 1, "one probe, at the server's start"
        scrape = httpx.get(f"http://{server.metrics_addr}/metrics", timeout=10).text
    lines = [json.loads(line) for line in server.proc.stdout.read().splitlines() if line.startswith("{")]
    said = [line for line in lines if "does not serve trace_filter" in line["message"]]
    # shown when the check fails (twice in CI the probe's line was glued to a start-up line: logs.announce)
    shown = [(line["level"], line["message"][:120]) for line in lines]
    assert len(said) == 1 and said[0]["level"] == "INFO" and said[0]["endpoint"] == proxy.url, (len(lines), shown)
    assert not [line for line in lines if line["level"] == "WARNING" and "trace" in line["message"]]
    assert 'method="trace_filter",outcome="rpc_error"} 1.0' in scrape, "counted by method: the one probe"
    assert 'method="eth_getBlockByNumber"' in scrape


def test_a_trace_probe_answer_is_kept_for_a_while_then_asked_again(devnet) -> None:
    from server.engine.silent import TraceSupport

    with FaultProxy(devnet.url, Faults()) as proxy:
        support = TraceSupport(recheck_s=0.5)
        assert support.probe(proxy.url) is True and proxy.requests == 1
        proxy.faults.unsupported = ("trace_filter",)  # the endpoint changes (another node behind the URL)
        assert support.probe(proxy.url) is True and proxy.requests == 1, "kept: not asked again"
        time.sleep(0.6)
        assert support.answer(proxy.url) is None and support.probe(proxy.url) is False and proxy.requests == 2
        support.forget(proxy.url)  # traces failed in a job: the next one asks again
        assert support.answer(proxy.url) is None


@pytest.mark.parametrize("strategy", ["auto", "blocks"])
def test_a_reverted_call_changes_nothing_and_a_direct_call_needs_no_receipt(tmp_path, strategy: str) -> None:
    """A mutator call that reverted is not a change; one that succeeded is. A transaction's own call traced
    without an error succeeded, so trace_filter needs no receipt for it; the block scan asks the receipts."""
    with open_devnet(REPO / ".devnet", "demo") as devnet, Rpc(devnet.url) as node:  # changed here: its own devnet
        url, proposals = devnet.url, devnet.deployment["Proposals"]
        admin, user = devnet.expected.owner, devnet.expected.users[0]
        deadline = 2**40

        def extend(sender: str, proposal_id: int) -> dict:
            data = function_signature_to_4byte_selector("extendProposalDeadline(uint256,uint256)")
            data += encode(["uint256", "uint256"], [proposal_id, deadline])
            return {"from": sender, "to": proposals, "data": "0x" + data.hex(), "gas": hex(200_000)}

        def succeeds(tx: dict) -> bool:
            try:
                node.call("eth_call", tx)
            except RpcError:
                return False
            return True

        live = next(i for i in sorted(devnet.expected.proposals, reverse=True) if succeeds(extend(admin, i)))
        blocks = {}
        for name, sender in (("reverted", user), ("succeeded", admin)):  # not an admin: onlyAdmin reverts
            tx_hash = node.call("eth_sendTransaction", extend(sender, live))
            receipt = wait_until(lambda h=tx_hash: node.call("eth_getTransactionReceipt", h), 10, what="the receipt")
            assert receipt["status"] == ("0x0" if name == "reverted" else "0x1"), receipt
            blocks[name] = int(receipt["blockNumber"], 16)

        with (
            RemoteProxy(url, Limits(rtt_s=0.0, rate=0.0, max_logs_range=None)) as proxy,
            grpc_server(
                rpc_url=proxy.url,
                deployment_path=devnet.deployment_path,
                db=tmp_path / "j.db",
                extra_env={"CHAINSYNC_SILENT_CHANGES": strategy},
            ) as server,
        ):
            found = {}
            for name, block in blocks.items():
                proxy.reset()
                result = sync_block(server.addr, "proposals", block)
                found[name] = {int(r.id): r for r in result.proposals}
                receipts = proxy.counts.methods.get("eth_getTransactionReceipt", 0)
                if strategy == "auto":  # anvil serves trace_filter
                    assert receipts == 0, (name, proxy.counts.methods)
                elif name == "succeeded":
                    assert receipts == 1, proxy.counts.methods
        assert live not in found["reverted"], "a reverted call changed nothing"
        assert int(found["succeeded"][live].expired_date) == deadline


def test_a_trace_range_the_node_refuses_is_learned_as_the_node_states_it(devnet) -> None:
    """anvil answers trace_filter over more than 300 blocks with "block range too large, currently limited
    to 300": the next requests, and the server's next jobs, ask for 300 blocks (not half of what was refused,
    which would take more requests), and they find what smaller requests find."""
    from server.engine.contracts import entity_kinds
    from server.engine.silent import SilentChanges, TraceSupport
    from server.metrics import NO_METRICS
    from server.transport.rpc import JsonRpc

    by_address = {devnet.deployment[k.contract].lower(): k for k in entity_kinds().values()}
    head = devnet.expected.head_block
    with JsonRpc([devnet.url]) as rpc:
        support = TraceSupport()
        learned = SilentChanges(rpc, "trace", 50_000, support, NO_METRICS).touches(head - 999, head, by_address)
        assert support.ranges[devnet.url] == 300
        small = SilentChanges(rpc, "trace", 100, TraceSupport(), NO_METRICS).touches(head - 999, head, by_address)
    assert learned and sorted(learned) == sorted(small)
