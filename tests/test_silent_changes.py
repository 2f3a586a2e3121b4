"""State changed by calls that emit no event is in the result.

For each event-less mutator the seed used, pick a block where only that call
touched its entity, sync exactly that block through gRPC, and check that the
entity is in the result with the state the getter shows. Both strategies
(trace_filter and the block scan) find it; with the scan switched off it is
missed, which is why it exists.
"""

from __future__ import annotations

import grpc
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc

from tests.processes import grpc_server
from tests.stack import TERMINAL, wait_for_state

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
