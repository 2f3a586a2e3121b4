"""Incremental syncs across reorgs: an application's view never goes stale (docs/reorgs.md).

Every test builds the view an application keeps: it applies the results in
order (upsert each record by id, delete the ``dropped`` ids), and checks it
with the same rule: for every kind, the view holds exactly the ids 1..counter
at the last result's toBlock, each equal to what the getter returns at that
block, read with web3.py (an independent reference). Branches are switched
with ``evm_snapshot`` / ``evm_revert`` and new blocks (docs/devnet.md says why
not ``anvil_reorg``); each test runs its own anvil from the saved demo chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from google.protobuf.json_format import MessageToDict
from web3 import Web3

from devnet.command import open_devnet
from server.engine.contracts import load_abi
from server.kinds import KINDS
from tests.fault_proxy import FaultProxy, Faults
from tests.processes import grpc_server
from tests.stack import TERMINAL, wait_for_state, wait_until

REPO = Path(__file__).resolve().parent.parent


# -- the application's view, and the check --------------------------------------


@dataclass
class View:
    """What an application holds: per kind, id -> record, built only from results."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k.name: {} for k in KINDS})
    to_block: int = -1
    cursor: str = ""

    def apply(self, result: jobs_pb2.SyncResult) -> None:
        data = MessageToDict(result, always_print_fields_with_no_presence=True)
        for kind in KINDS:
            for record in data.get(kind.name, []):
                self.records[kind.name][record["id"]] = record
            for entity_id in data.get("dropped", {}).get(kind.name, []):
                self.records[kind.name].pop(entity_id, None)
        self.to_block, self.cursor = result.to_block, result.cursor.job_id


def getter_fields(abi: list[dict[str, Any]], getter: str) -> list[str]:
    return [o["name"] for o in next(i for i in abi if i.get("name") == getter)["outputs"]]


def as_json(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    return value


def assert_view_is_the_chain(view: View, devnet) -> None:
    """Every id 1..counter at the view's toBlock, each equal to its getter there; no other id."""
    w3 = Web3(Web3.HTTPProvider(devnet.url, request_kwargs={"timeout": 60}))
    for kind in KINDS:
        abi = load_abi(kind.contract)
        contract = w3.eth.contract(address=devnet.deployment[kind.contract], abi=abi)
        count = getattr(contract.functions, kind.counter)().call(block_identifier=view.to_block)
        held = view.records[kind.name]
        assert sorted(held, key=int) == [str(i) for i in range(1, count + 1)], f"{kind.name}: ids in the view"
        names = getter_fields(abi, kind.getter)
        for entity_id, record in held.items():
            values = getattr(contract.functions, kind.getter)(int(entity_id)).call(block_identifier=view.to_block)
            expected = dict(zip(names, map(as_json, values)))
            got = {name: record[name] for name in names}
            assert got == expected, f"{kind.name} {entity_id} at block {view.to_block}"


# -- the chain ------------------------------------------------------------------


class Chain:
    """Transactions and branch switches on a devnet, through its JSON-RPC."""

    def __init__(self, devnet) -> None:
        self.devnet = devnet
        self.admin = devnet.expected.admins[0]

    def rpc(self, method: str, params: list) -> Any:
        answer = httpx.post(
            self.devnet.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30
        ).json()
        assert "error" not in answer, answer
        return answer["result"]

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber", []), 16)

    def send(self, contract: str, signature: str, types: list[str], args: list[Any]) -> None:
        data = function_signature_to_4byte_selector(signature) + encode(types, args)
        tx = {
            "from": self.admin,
            "to": self.devnet.deployment[contract],
            "data": "0x" + data.hex(),
            "gas": hex(900_000),
        }
        tx_hash = self.rpc("eth_sendTransaction", [tx])
        # mined at once, but a devnet just loaded from its state can take a moment to say so
        wait_until(lambda: self.rpc("eth_getTransactionReceipt", [tx_hash]) is not None, 10, what="the receipt")
        receipt = self.rpc("eth_getTransactionReceipt", [tx_hash])
        assert receipt["status"] == "0x1", f"{signature}{args} reverted"

    def mine(self, blocks: int) -> None:
        if blocks > 0:
            self.rpc("anvil_mine", [hex(blocks)])

    def snapshot(self) -> str:
        return self.rpc("evm_snapshot", [])

    def revert(self, snapshot: str) -> None:
        assert self.rpc("evm_revert", [snapshot]) is True

    def status(self, proposal_id: int) -> bool:
        w3 = Web3(Web3.HTTPProvider(self.devnet.url))
        contract = w3.eth.contract(address=self.devnet.deployment["Proposals"], abi=load_abi("Proposals"))
        return contract.functions.getProposal(proposal_id).call()[6]

    def flip(self, proposal_id: int) -> None:
        """changeProposalStatus: an event-ful change of one proposal."""
        self.send(
            "Proposals",
            "changeProposalStatus(uint256,bool)",
            ["uint256", "bool"],
            [proposal_id, not self.status(proposal_id)],
        )

    def create_report(self, title: str) -> None:
        self.send("Reports", "createReport(string,string)", ["string", "string"], [title, title + "-description"])

    def create_proposal(self, title: str) -> None:
        expires = int(time.time()) + 10 * 365 * 86400
        self.send(
            "Proposals",
            "createProposal(string,string,string,uint256,uint256)",
            ["string", "string", "string", "uint256", "uint256"],
            [title, title + "-short", title + "-details", 1, expires],
        )

    def extend_deadline(self, proposal_id: int) -> None:
        """extendProposalDeadline: a change that emits no event."""
        w3 = Web3(Web3.HTTPProvider(self.devnet.url))
        contract = w3.eth.contract(address=self.devnet.deployment["Proposals"], abi=load_abi("Proposals"))
        expires = contract.functions.getProposal(proposal_id).call()[7] + 86_400
        self.send(
            "Proposals", "extendProposalDeadline(uint256,uint256)", ["uint256", "uint256"], [proposal_id, expires]
        )


# -- the service ----------------------------------------------------------------


@dataclass
class Service:
    stub: jobs_pb2_grpc.JobServiceStub

    def sync(self, **request: Any) -> tuple[jobs_pb2.Job, jobs_pb2.SyncResult | None]:
        job_id = self.stub.StartSync(jobs_pb2.StartSyncRequest(**request)).job_id
        job = wait_for_state(self.stub, job_id, TERMINAL, timeout_s=120)
        if job.state != jobs_pb2.JOB_STATE_COMPLETED:
            return job, None
        return job, self.stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))

    def full(self, view: View) -> jobs_pb2.SyncResult:
        job, result = self.sync(is_full_sync=True)
        assert result is not None, f"{job.error.code}: {job.error.message}"
        view.apply(result)
        return result

    def incremental(self, view: View | None = None) -> jobs_pb2.SyncResult:
        """The next incremental sync (after the view's cursor when given) applied to the view."""
        request: dict[str, Any] = {"incremental": True}
        if view is not None and view.cursor:
            request["after_job_id"] = view.cursor
        job, result = self.sync(**request)
        assert result is not None, f"{job.error.code}: {job.error.message}"
        if view is not None:
            view.apply(result)
        return result


@pytest.fixture
def devnet() -> Iterator:
    with open_devnet(REPO / ".devnet", "demo") as running:
        yield running


@contextmanager
def service(devnet, tmp_path: Path, rpc_url: str | None = None, **env: str) -> Iterator[Service]:
    with (
        grpc_server(
            rpc_url=rpc_url or devnet.url,
            deployment_path=devnet.deployment_path,
            db=tmp_path / "jobs.sqlite3",
            extra_env=env,
        ) as server,
        grpc.insecure_channel(server.addr) as channel,
    ):
        yield Service(jobs_pb2_grpc.JobServiceStub(channel))


def reorg_of(result: jobs_pb2.SyncResult) -> tuple[int, int] | None:
    return (result.reorg.fork_block, result.reorg.dropped_blocks) if result.HasField("reorg") else None


# -- the cases --------------------------------------------------------------------


def test_the_issue_scenario_a_created_and_a_flipped_proposal_on_a_dropped_branch(devnet, tmp_path) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path) as svc:
        view = View()
        full = svc.incremental(view)
        assert not full.after_job_id and len(full.proposals) == devnet.expected.counts["proposals"]
        assert_view_is_the_chain(view, devnet)

        fork = chain.head() + 1
        snapshot = chain.snapshot()
        chain.create_proposal("old-branch")
        chain.flip(97)
        old = svc.incremental(view)
        new_id = str(devnet.expected.counts["proposals"] + 1)
        assert {p.id for p in old.proposals} == {new_id, "97"} and old.after_job_id == full.job_id
        old_top = old.to_block

        chain.revert(snapshot)
        chain.flip(96)
        chain.mine(3)  # the new branch grows past the old one
        assert chain.head() > old_top
        new = svc.incremental(view)
        assert reorg_of(new) == (fork, old_top - fork + 1)
        assert list(new.dropped.proposals) == [new_id], "the proposal of the dropped branch is gone"
        assert {"96", "97"} <= {p.id for p in new.proposals}, "97 is read again, 96 changed on the new branch"
        assert new.from_block == fork and new.cursor.job_id == new.job_id and new.cursor.to_block == new.to_block
        assert_view_is_the_chain(view, devnet)


@pytest.mark.parametrize("depth", [1, 5, 64])
def test_reorgs_of_several_depths(devnet, tmp_path, depth: int) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path) as svc:
        view = View()
        svc.incremental(view)
        fork = chain.head() + 1
        snapshot = chain.snapshot()
        chain.flip(3)  # the old branch: depth blocks, with a changed proposal and (from 2 up) a new report
        if depth >= 2:
            chain.create_report("old-branch")
            chain.mine(depth - 2)
        svc.incremental(view)
        assert view.to_block == fork + depth - 1

        chain.revert(snapshot)
        chain.flip(4)
        chain.mine(depth)  # the new branch: one block longer
        new = svc.incremental(view)
        assert reorg_of(new) == (fork, depth)
        assert_view_is_the_chain(view, devnet)


def test_an_entity_created_only_on_the_dropped_branch_is_dropped(devnet, tmp_path) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path) as svc:
        view = View()
        svc.incremental(view)
        snapshot = chain.snapshot()
        chain.create_report("only-on-the-old-branch")
        old = svc.incremental(view)
        created = [r.id for r in old.reports]
        assert created == [str(devnet.expected.counts["reports"] + 1)]
        chain.revert(snapshot)
        chain.mine(2)
        new = svc.incremental(view)
        assert list(new.dropped.reports) == created and not new.reports
        assert_view_is_the_chain(view, devnet)


def test_an_entity_changed_only_on_the_dropped_branch_is_read_again(devnet, tmp_path) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path) as svc:
        view = View()
        svc.incremental(view)
        before = view.records["proposals"]["10"]
        snapshot = chain.snapshot()
        chain.flip(10)
        chain.extend_deadline(12)  # no event: found through the calls
        svc.incremental(view)
        assert view.records["proposals"]["10"]["activeStatus"] != before["activeStatus"]
        chain.revert(snapshot)
        chain.mine(3)
        new = svc.incremental(view)
        assert {p.id for p in new.proposals} == {"10", "12"} and not new.dropped.proposals
        again = view.records["proposals"]["10"]
        assert {k: v for k, v in again.items() if k != "created"} == {k: v for k, v in before.items() if k != "created"}
        assert_view_is_the_chain(view, devnet)


def test_a_shorter_branch_completes_from_the_fork_to_the_new_head(devnet, tmp_path) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path) as svc:
        view = View()
        svc.incremental(view)
        fork = chain.head() + 1
        snapshot = chain.snapshot()
        chain.create_report("old-branch")
        chain.flip(12)
        chain.mine(4)
        old = svc.incremental(view)
        chain.revert(snapshot)
        chain.mine(1)  # the new branch is 1 block long; the old one was 6
        assert chain.head() < old.to_block
        new = svc.incremental(view)
        assert (new.from_block, new.to_block) == (fork, chain.head())
        assert reorg_of(new) == (fork, old.to_block - fork + 1)
        assert list(new.dropped.reports) == [r.id for r in old.reports]
        assert_view_is_the_chain(view, devnet)
        again = svc.incremental(view)  # and the next one goes on from there
        assert again.from_block == new.to_block + 1 and not again.HasField("reorg")


def test_a_reorg_deeper_than_the_window_asks_for_a_full_sync(devnet, tmp_path) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path, CHAINSYNC_REORG_WINDOW="8") as svc:
        view = View()
        svc.incremental(view)
        snapshot = chain.snapshot()
        chain.flip(14)
        chain.mine(19)
        svc.incremental(view)
        chain.revert(snapshot)
        chain.mine(25)
        job, result = svc.sync(incremental=True, after_job_id=view.cursor)
        assert result is None and job.state == jobs_pb2.JOB_STATE_FAILED
        assert job.error.code == "REORG_TOO_DEEP" and "full sync" in job.error.message
        _, full = svc.sync(is_full_sync=True)  # what the client does: replace its view with a full sync
        fresh = View()
        fresh.apply(full)
        assert_view_is_the_chain(fresh, devnet)


def test_two_consumers_with_their_own_cursors(devnet, tmp_path) -> None:
    chain = Chain(devnet)
    with service(devnet, tmp_path) as svc:
        a, b = View(), View()
        svc.incremental(a)  # no sync before: a full one
        chain.flip(3)
        svc.full(b)  # b starts on its own, from a full sync, and names its cursor from then on
        snapshot = chain.snapshot()
        chain.create_report("a-sees-it")
        svc.incremental(a)  # a moves past the new report; b does not
        chain.flip(5)
        svc.incremental(b)
        chain.revert(snapshot)
        chain.flip(7)
        chain.mine(3)
        for view in (a, b):
            svc.incremental(view)
            assert_view_is_the_chain(view, devnet)
        assert a.to_block == b.to_block


def test_after_must_name_a_completed_job_of_the_same_type_the_caller_can_see(devnet, tmp_path) -> None:
    with service(devnet, tmp_path) as svc:
        job, _ = svc.sync(blocks_back=5, type=jobs_pb2.JOB_TYPE_REPORTS_SYNC)
        cases = [
            ("00000000-0000-4000-8000-000000000000", grpc.StatusCode.NOT_FOUND, "CURSOR_NOT_FOUND"),
            ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JOB_ID"),
            (job.id, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),  # a reports_sync for a blockchain_sync
        ]
        for after, code, reason in cases:
            with pytest.raises(grpc.RpcError) as err:
                svc.stub.StartSync(jobs_pb2.StartSyncRequest(incremental=True, after_job_id=after))
            assert err.value.code() == code and reason in str(err.value.trailing_metadata()), after
            assert "after" in err.value.details()


def test_a_reorg_racing_a_running_job(devnet, tmp_path) -> None:
    """The chain switches branches while the job reads records: it syncs again from the fork, and the
    view built from its result is the chain's."""
    chain = Chain(devnet)
    with FaultProxy(devnet.url, Faults(delay_s=0.7, delay_only=("eth_call",))) as proxy:
        with service(devnet, tmp_path, rpc_url=proxy.url, CHAINSYNC_RPC_CONCURRENCY="1") as svc:
            view = View()
            proxy.faults.delay_s = 0.0
            svc.incremental(view)
            snapshot = chain.snapshot()
            chain.create_report("old-branch")
            chain.flip(16)
            chain.mine(2)
            proxy.faults.delay_s = 0.7  # getter reads are slow now: the switch lands while the job reads
            job_id = svc.stub.StartSync(jobs_pb2.StartSyncRequest(incremental=True, after_job_id=view.cursor)).job_id
            wait_until(lambda: svc.stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.records_total > 0, 60)
            chain.revert(snapshot)
            chain.flip(17)
            chain.mine(3)
            proxy.faults.delay_s = 0.0
            job = wait_for_state(svc.stub, job_id, TERMINAL, timeout_s=120)
            assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
            assert job.stats.reorgs >= 1
            result = svc.stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
            view.apply(result)
            assert "old-branch" not in {r.title_cid for r in result.reports}
            assert_view_is_the_chain(view, devnet)


def test_a_full_sync_whose_chain_gets_shorter_while_it_reads_ends_at_the_new_head(devnet, tmp_path) -> None:
    """The chain drops a full sync's last blocks while the job reads its records (a shorter branch replaces
    them): the job syncs again up to the new head, and its records and event count are the chain's there
    (a window of 8 blocks: the window moves down over blocks whose events the job counted but did not keep)."""
    chain = Chain(devnet)
    chain.create_report("on-both-branches")  # an event the shorter chain's window moves over
    chain.mine(3)
    snapshot = chain.snapshot()
    chain.create_report("old-branch")
    chain.flip(16)
    chain.mine(3)
    old_head = chain.head()
    window = {"CHAINSYNC_REORG_WINDOW": "8"}
    with FaultProxy(devnet.url, Faults(delay_s=0.7, delay_only=("eth_call",))) as proxy:
        with service(devnet, tmp_path, rpc_url=proxy.url, CHAINSYNC_RPC_CONCURRENCY="1", **window) as svc:
            job_id = svc.stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
            wait_until(lambda: svc.stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).stats.records_total > 0, 60)
            chain.revert(snapshot)
            chain.mine(1)  # the new branch is 1 block long; the old one was 5
            proxy.faults.delay_s = 0.0
            job = wait_for_state(svc.stub, job_id, TERMINAL, timeout_s=120)
            assert job.state == jobs_pb2.JOB_STATE_COMPLETED, job.error
            result = svc.stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
            again = svc.stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id  # the same head
            assert wait_for_state(svc.stub, again, TERMINAL, timeout_s=120).state == jobs_pb2.JOB_STATE_COMPLETED
            clean = svc.stub.GetResult(jobs_pb2.GetResultRequest(job_id=again))
    assert job.stats.reorgs >= 1
    assert result.to_block == chain.head() < old_head
    assert "old-branch" not in {r.title_cid for r in result.reports}
    assert clean.to_block == result.to_block
    assert result.events_count == clean.events_count > 0, "the events of the blocks the new branch shares, once"
    view = View()
    view.apply(result)
    assert_view_is_the_chain(view, devnet)


def test_a_switch_between_the_setup_and_the_windows_recording_syncs_the_window_again(devnet, tmp_path) -> None:
    """A job whose toBlock is the head reads state at the hash its first round trip saw. If the chain
    switched before its window was recorded (here: a hash the chain never had, as the setup would have seen
    on the branch now gone), the window is suspect: it is scanned again and read by number, and the records
    are the chain's, as a job that saw the right hash reads them."""
    from server.engine.contracts import entity_kinds
    from server.engine.contracts import load_deployment as engine_deployment
    from server.engine.ranges import BlockRange
    from server.engine.stats import SyncStats
    from server.engine.sync import SyncEngine, SyncOptions, SyncPlan
    from server.jobs.store import JobRecord, JobStore, SQLiteConnector
    from server.jobs.sync_job import StoreJournal
    from server.transport.rpc import JsonRpc

    store = JobStore(SQLiteConnector(tmp_path / "jobs.sqlite3"))
    deployment = engine_deployment(devnet.deployment_path)
    head = devnet.expected.head_block
    start = min(devnet.deployment["deploymentBlocks"].values())
    names = [kind.name for kind in KINDS]
    outcomes = {}
    with JsonRpc([devnet.url]) as rpc:
        right_hash = rpc.call("eth_getBlockByNumber", [hex(head), False])["hash"]
        for seen, to_block_hash in (("right", right_hash), ("gone", "0x" + "ab" * 32)):
            store.create(JobRecord(id=seen, type="blockchain_sync", request={"isFullSync": True}, timeout_s=60))
            assert store.claim_next("a", 30).id == seen
            engine = SyncEngine(rpc, deployment, entity_kinds(), SyncOptions(silent_changes="off"))
            plan = SyncPlan(BlockRange(start, head), full=True, window_floor=start, to_block_hash=to_block_hash)
            stats = SyncStats()
            outcome = engine.run(plan, names, stats, lambda *_: None, StoreJournal(store, seen, {}, "a", None))
            engine.close()
            records = {name: list(store.records(seen, name)) for name in names}
            outcomes[seen] = (outcome, stats, records)
    (right, right_stats, right_records), (gone, gone_stats, gone_records) = outcomes["right"], outcomes["gone"]
    assert right_stats.reorgs == 0 and gone_stats.reorgs == 1
    assert gone.plan.to_block_hash is None and gone.to_block_hash == right.to_block_hash == right_hash
    assert gone_records == right_records and gone.counts == right.counts
    assert sum(len(r) for r in right_records.values()) == sum(devnet.expected.counts[n] for n in names)
    assert gone_stats.events_found == right_stats.events_found > 0, "the window's events are not counted twice"
    store.close()
