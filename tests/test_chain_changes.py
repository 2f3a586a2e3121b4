"""When the chain moves: incremental syncs, confirmations, and a reorg in the middle of a job.

Each test gets its own anvil started from the saved demo chain (nothing it does
is saved), so it may mine and reorganise freely.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector
from google.protobuf.json_format import MessageToDict
from web3 import Web3

from devnet.command import open_devnet
from server.engine.contracts import load_abi
from tests.fault_proxy import FaultProxy, Faults
from tests.processes import grpc_server
from tests.stack import TERMINAL, wait_for_state, wait_until

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_devnet() -> Iterator:
    with open_devnet(REPO / ".devnet", "demo") as devnet:
        yield devnet


def rpc(url: str, method: str, params: list) -> object:
    answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30).json()
    assert "error" not in answer, answer
    return answer["result"]


def create_report_tx(devnet, title: str) -> dict:
    data = function_signature_to_4byte_selector("createReport(string,string)") + encode(
        ["string", "string"], [title, title + "-description"]
    )
    return {
        "from": devnet.expected.users[0],
        "to": devnet.deployment["Reports"],
        "data": "0x" + data.hex(),
        "gas": hex(500_000),
    }


def run_job(stub, **request) -> tuple[jobs_pb2.Job, jobs_pb2.SyncResult | None]:
    job_id = stub.StartSync(jobs_pb2.StartSyncRequest(**request)).job_id
    job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
    result = (
        stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id)) if job.state == jobs_pb2.JOB_STATE_COMPLETED else None
    )
    return job, result


def test_incremental_sync_continues_where_the_last_one_ended(fresh_devnet, tmp_path) -> None:
    with (
        grpc_server(
            rpc_url=fresh_devnet.url, deployment_path=fresh_devnet.deployment_path, db=tmp_path / "j.db"
        ) as server,
        grpc.insecure_channel(server.addr) as channel,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        first, whole = run_job(stub, incremental=True, type=jobs_pb2.JOB_TYPE_REPORTS_SYNC)
        assert first.state == jobs_pb2.JOB_STATE_COMPLETED
        assert len(whole.reports) == fresh_devnet.expected.counts["reports"], "the first incremental sync is full"

        rpc(fresh_devnet.url, "eth_sendTransaction", [create_report_tx(fresh_devnet, "incremental")])
        rpc(fresh_devnet.url, "anvil_mine", [hex(5)])
        head = int(rpc(fresh_devnet.url, "eth_blockNumber", []), 16)

        second, new = run_job(stub, incremental=True, type=jobs_pb2.JOB_TYPE_REPORTS_SYNC)
        assert (second.from_block, second.to_block) == (first.to_block + 1, head)
        assert [r.title_cid for r in new.reports] == ["incremental"]
        assert new.reports[0].id == str(len(whole.reports) + 1)
        assert first.to_block < new.reports[0].created.block_number <= head

        third, nothing = run_job(stub, incremental=True, type=jobs_pb2.JOB_TYPE_REPORTS_SYNC)
        assert third.state == jobs_pb2.JOB_STATE_COMPLETED and not nothing.reports
        assert nothing.to_block == head

        other_type, _ = run_job(stub, incremental=True, type=jobs_pb2.JOB_TYPE_PETITIONS_SYNC)
        assert other_type.from_block == min(fresh_devnet.deployment["deploymentBlocks"].values()), "scopes are per type"


def test_confirmations_keep_to_block_behind_the_head(fresh_devnet, tmp_path) -> None:
    with (
        grpc_server(
            rpc_url=fresh_devnet.url,
            deployment_path=fresh_devnet.deployment_path,
            db=tmp_path / "j.db",
            extra_env={"CHAINSYNC_CONFIRMATIONS": "12"},
        ) as server,
        grpc.insecure_channel(server.addr) as ch,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(ch)
        head = int(rpc(fresh_devnet.url, "eth_blockNumber", []), 16)
        job, _ = run_job(stub, blocks_back=100)
        assert job.to_block == head - 12 and job.from_block == head - 112
        job, _ = run_job(stub, blocks_back=100, confirmations=0)
        assert job.to_block == head
        job, _ = run_job(stub, from_block=10, to_block=head)
        assert job.state == jobs_pb2.JOB_STATE_FAILED and job.error.code == "INVALID_RANGE"
        assert "past the confirmed head" in job.error.message


def test_a_reorg_during_a_job_is_synced_again_and_the_records_match_the_new_chain(fresh_devnet, tmp_path) -> None:
    """The last three blocks are replaced (evm_snapshot / evm_revert, then new blocks: anvil_reorg
    on a chain loaded from a state dump leaves eth_call answering 0x, see docs/devnet.md)."""
    url = fresh_devnet.url
    fork_point = rpc(url, "evm_snapshot", [])
    rpc(url, "eth_sendTransaction", [create_report_tx(fresh_devnet, "old-branch")])
    rpc(url, "anvil_mine", [hex(2)])
    head = int(rpc(url, "eth_blockNumber", []), 16)
    # Getter reads are slow through this proxy, so the reorg lands after the scan and before the job ends.
    with (
        FaultProxy(url, Faults(delay_s=0.7, delay_only=("eth_call",))) as proxy,
        grpc_server(
            rpc_url=proxy.url,
            deployment_path=fresh_devnet.deployment_path,
            db=tmp_path / "j.db",
            extra_env={"CHAINSYNC_LOG_CHUNK": "10", "CHAINSYNC_RPC_CONCURRENCY": "1"},
        ) as server,
        grpc.insecure_channel(server.addr) as channel,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        job_id = stub.StartSync(jobs_pb2.StartSyncRequest(from_block=head - 40, to_block=head)).job_id
        wait_until(
            lambda: (
                (j := stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).stats.blocks_total > 0
                and j.stats.blocks_done == j.stats.blocks_total
            ),
            60,
        )
        old_hash = rpc(url, "eth_getBlockByNumber", [hex(head), False])["hash"]
        assert rpc(url, "evm_revert", [fork_point]) is True
        rpc(url, "eth_sendTransaction", [create_report_tx(fresh_devnet, "from-the-reorg")])
        rpc(url, "anvil_mine", [hex(2)])
        assert int(rpc(url, "eth_blockNumber", []), 16) == head
        new_hash = rpc(url, "eth_getBlockByNumber", [hex(head), False])["hash"]
        assert new_hash != old_hash

        job = wait_for_state(stub, job_id, TERMINAL, timeout_s=120)
        assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
        assert job.stats.reorgs >= 1
        result = stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
        assert result.to_block_hash == new_hash

    w3 = Web3(Web3.HTTPProvider(url))
    address = fresh_devnet.deployment["Reports"]
    reports = {r.id: MessageToDict(r, always_print_fields_with_no_presence=True) for r in result.reports}
    titles = {r["titleCid"] for r in reports.values()}
    assert "from-the-reorg" in titles and "old-branch" not in titles
    logs = w3.eth.get_logs({"fromBlock": head - 40, "toBlock": head, "address": address})
    assert {str(int.from_bytes(log["topics"][1], "big")) for log in logs} <= set(reports)
    contract = w3.eth.contract(address=address, abi=load_abi("Reports"))
    for report_id, record in reports.items():
        direct = contract.functions.getReport(int(report_id)).call(block_identifier=head)
        assert record["titleCid"] == direct[0] and record["upvotes"] == str(direct[2])
