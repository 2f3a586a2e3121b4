"""A sync job end to end on the demo devnet: the records are exactly the chain's.

Through REST, a full sync's records equal, field by field, what the seeding
script says it wrote. Through gRPC, a range sync's records equal the getters
read directly at toBlock, and its entity set equals the one eth_getLogs names.
"""

from __future__ import annotations

import time

from chainsync.v1 import jobs_pb2
from web3 import Web3

from server.engine.contracts import load_abi
from tests.stack import TERMINAL, wait_until

GETTERS = {
    "proposals": ("Proposals", "getProposal"),
    "petitions": ("Petitions", "getPetition"),
    "reports": ("Reports", "getReport"),
}
PROVENANCE = {"createdBlock": "blockNumber", "createdTxHash": "transactionHash", "createdLogIndex": "logIndex"}


def poll_rest_job(http, job_id: str, timeout_s: float = 120) -> list[dict]:
    """Polls the status URL until the job ends; returns every status seen."""
    seen: list[dict] = []

    def done() -> bool:
        response = http.get(f"/api/blockchain/sync/status/{job_id}")
        assert response.status_code == 200, response.text
        seen.append(response.json()["job"])
        return seen[-1]["status"] in ("completed", "failed", "cancelled")

    wait_until(done, timeout_s, interval_s=0.05, what=f"job {job_id}")
    return seen


def test_full_sync_through_rest_matches_the_seed_field_by_field(stack, devnet) -> None:
    started = stack.http.post("/api/blockchain/sync", json={"isFullSync": True})
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["success"] is True and body["message"] == "Blockchain sync job started"
    assert body["statusUrl"] == f"/api/blockchain/sync/status/{body['jobId']}"
    assert body["resultUrl"] == f"/api/blockchain/sync/result/{body['jobId']}"

    seen = poll_rest_job(stack.http, body["jobId"])
    final = seen[-1]
    assert final["status"] == "completed", final
    assert final["progress"] == 100
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress), "progress went down"
    assert final["type"] == "blockchain_sync" and final["createdAt"] and final["startedAt"]

    result = stack.http.get(body["resultUrl"]).json()
    assert result["success"] is True
    payload = result["result"]
    expected = devnet.expected
    assert payload["fromBlock"] == min(devnet.deployment["deploymentBlocks"].values())
    assert payload["toBlock"] == final["toBlock"]
    assert isinstance(payload["processingTime"], int) and result["completedAt"]
    for kind in ("proposals", "petitions", "reports"):
        entities = expected.entities(kind)
        want = [entities[i] for i in sorted(entities)]
        got = payload[kind]
        assert [r["id"] for r in got] == [str(e["id"]) for e in want], kind
        for record, entity in zip(got, want, strict=True):
            for name, value in entity.items():
                if name in PROVENANCE:
                    assert record["created"][PROVENANCE[name]] == value, (
                        kind,
                        entity["id"],
                        name,
                    )
                elif name in record:
                    assert record[name] == (
                        str(value) if isinstance(value, int) and not isinstance(value, bool) else value
                    ), (kind, entity["id"], name)
            missing = set(record) - set(entity) - {"created", "id"}
            assert not missing, f"{kind} {entity['id']}: the seed model lacks {missing}"


def test_range_sync_through_grpc_matches_getters_and_logs_at_to_block(stack, devnet) -> None:
    w3 = Web3(Web3.HTTPProvider(devnet.url))
    head = w3.eth.block_number
    blocks_back = max(10, head // 3)
    response = stack.stub.StartSync(jobs_pb2.StartSyncRequest(blocks_back=blocks_back))
    events = []
    for event in stack.stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=response.job_id), timeout=120):
        events.append(event)
    assert events[-1].job.state == jobs_pb2.JOB_STATE_COMPLETED, events[-1].job
    assert [e.sequence for e in events] == sorted({e.sequence for e in events}), "sequence numbers must increase"
    assert events[-1].job.progress == 100

    job = stack.stub.GetJob(jobs_pb2.GetJobRequest(job_id=response.job_id))
    earliest = min(devnet.deployment["deploymentBlocks"].values())
    assert job.to_block == head
    assert job.from_block == max(earliest, head - blocks_back)

    result = stack.stub.GetResult(jobs_pb2.GetResultRequest(job_id=response.job_id))
    assert (result.from_block, result.to_block) == (job.from_block, job.to_block)
    assert result.to_block_hash == w3.eth.get_block(result.to_block)["hash"].to_0x_hex()
    for kind, (contract_name, getter) in GETTERS.items():
        address = devnet.deployment[contract_name]
        contract = w3.eth.contract(address=address, abi=load_abi(contract_name))
        logs = w3.eth.get_logs({"fromBlock": result.from_block, "toBlock": result.to_block, "address": address})
        named = {int.from_bytes(log["topics"][1], "big") for log in logs if len(log["topics"]) > 1}
        records = list(getattr(result, kind))
        ids = {int(r.id) for r in records}
        assert named <= ids, f"{kind}: entities named by events are missing: {named - ids}"
        changed = {
            i
            for i, e in devnet.expected.entities(kind).items()
            if any(result.from_block <= c["block"] <= result.to_block for c in e["changedBlocks"])
        }
        assert ids == changed, f"{kind}: the seed changed exactly these entities in the range"
        assert named, f"the range should touch some {kind}"
        outputs = [o["name"] for o in next(i for i in load_abi(contract_name) if i.get("name") == getter)["outputs"]]
        for record in records:
            direct = getattr(contract.functions, getter)(int(record.id)).call(block_identifier=result.to_block)
            as_json = {
                name: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                for name, v in zip(outputs, direct, strict=True)
            }
            from google.protobuf.json_format import MessageToDict

            got = MessageToDict(record, always_print_fields_with_no_presence=True)
            for name, value in as_json.items():
                assert got[name] == value, (kind, record.id, name)


def test_a_job_id_comes_back_at_once_while_the_work_runs_in_the_background(stack) -> None:
    t0 = time.perf_counter()
    response = stack.stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True))
    assert time.perf_counter() - t0 < 1.0
    assert response.job.state in (jobs_pb2.JOB_STATE_PENDING, jobs_pb2.JOB_STATE_RUNNING)
    wait_until(lambda: stack.stub.GetJob(jobs_pb2.GetJobRequest(job_id=response.job_id)).state in TERMINAL)


def test_result_pages_add_up_to_the_whole_result(stack) -> None:
    job_id = stack.stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
    wait_until(lambda: stack.stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).state in TERMINAL)
    whole = stack.stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    pages, token = [], ""
    for _ in range(100):
        page = stack.stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id, page_size=50, page_token=token))
        assert all(len(getattr(page, k)) <= 50 for k in ("proposals", "petitions", "reports"))
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert len(pages) > 1
    for kind in ("proposals", "petitions", "reports"):
        joined = [r for p in pages for r in getattr(p, kind)]
        assert joined == list(getattr(whole, kind))
        assert getattr(whole, f"{kind}_total") == len(joined)


def test_old_clients_full_sync_with_blocks_back_is_a_full_sync(stack, devnet) -> None:
    started = stack.http.post("/api/blockchain/sync", json={"blocksBack": 999999, "isFullSync": True})
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]
    wait_until(lambda: stack.http.get(f"/api/blockchain/sync/status/{job_id}").json()["job"]["status"] == "completed")
    result = stack.http.get(f"/api/blockchain/sync/result/{job_id}").json()["result"]
    assert result["fromBlock"] == min(devnet.deployment["deploymentBlocks"].values())
    assert len(result["reports"]) == devnet.expected.counts["reports"]


def test_full_sync_is_exact_against_the_chain_itself(stack, devnet) -> None:
    """Every record equals its getter read directly at toBlock; the events counted equal eth_getLogs
    read directly; nothing missing, nothing extra; uint256 values beyond 2^53 and 2^64 exact."""
    from google.protobuf.json_format import MessageToDict

    job_id = stack.stub.StartSync(jobs_pb2.StartSyncRequest(is_full_sync=True)).job_id
    wait_until(lambda: stack.stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).state in TERMINAL)
    result = stack.stub.GetResult(jobs_pb2.GetResultRequest(job_id=job_id))
    w3 = Web3(Web3.HTTPProvider(devnet.url))
    addresses = [devnet.deployment[c] for c, _ in GETTERS.values()]
    logs = w3.eth.get_logs({"fromBlock": result.from_block, "toBlock": result.to_block, "address": addresses})
    assert result.events_count == len(logs)
    big = []
    for kind, (contract_name, getter) in GETTERS.items():
        contract = w3.eth.contract(address=devnet.deployment[contract_name], abi=load_abi(contract_name))
        count = getattr(contract.functions, f"{kind[:-1]}Count")().call(block_identifier=result.to_block)
        records = list(getattr(result, kind))
        assert [int(r.id) for r in records] == list(range(1, count + 1)), kind
        outputs = [o["name"] for o in next(i for i in load_abi(contract_name) if i.get("name") == getter)["outputs"]]
        for record in records:
            direct = getattr(contract.functions, getter)(int(record.id)).call(block_identifier=result.to_block)
            got = MessageToDict(record, always_print_fields_with_no_presence=True)
            for name, value in zip(outputs, direct, strict=True):
                want = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
                assert got[name] == want, (kind, record.id, name)
                if isinstance(value, int) and not isinstance(value, bool) and value > 2**64:
                    big.append(value)
    assert big and max(big) == 2**256 - 1, "the seed has values beyond 2^64, up to 2^256-1"
