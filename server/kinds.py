"""Record kinds: the one declaration of what chainsync syncs.

A record kind is one contract of the platform (../shared/spec/contracts.md)
whose entities have ids 1..counter. Everything else is derived from the
declarations below: the event topics and their id argument, the getter's
field names and types (from the contract's ABI in contracts/artifacts/,
server/engine/contracts.py), the job types and which kinds each syncs, the
result's lists and totals, the IPFS content fields, the protobuf messages the
servicer builds and the JSON the bridge serves. No other module of server/ or
rest_bridge/ names a kind; docs/adding-a-contract.md lists the few files
outside them that a new contract touches.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecordKind:
    name: str  # the result's key, in JSON, protobuf (SyncResult.<name>, <name>_total) and the store
    contract: str  # the deployment file's key and the ABI artifact contracts/artifacts/<contract>.json
    id_argument: str  # the indexed event argument that names the entity
    created_event: str  # the event that creates an entity (its log is the record's provenance)
    getter: str  # view(uint256 id) -> the entity's fields, read at the job's toBlock
    counter: str  # view() -> the highest id (ids run 1..counter)
    job_type: str  # the job type that syncs only this kind (JobType JOB_TYPE_<JOB_TYPE>)
    message: str  # the protobuf message of one record (chainsync.v1.<message>)
    content_fields: dict[str, str] = field(default_factory=dict)  # *Cid getter field -> field for its IPFS text


KINDS: tuple[RecordKind, ...] = (
    RecordKind(
        name="proposals",
        contract="Proposals",
        id_argument="proposalId",
        created_event="ProposalCreated",
        getter="getProposal",
        counter="proposalCount",
        job_type="proposals_sync",
        message="Proposal",
        content_fields={
            "titleCid": "title",
            "shortDescriptionCid": "shortDescription",
            "descriptionInDetailsCid": "description",
        },
    ),
    RecordKind(
        name="petitions",
        contract="Petitions",
        id_argument="petitionId",
        created_event="PetitionCreated",
        getter="getPetition",
        counter="petitionCount",
        job_type="petitions_sync",
        message="Petition",
        content_fields={"titleCid": "title", "desCid": "description"},
    ),
    RecordKind(
        name="reports",
        contract="Reports",
        id_argument="reportId",
        created_event="ReportCreated",
        getter="getReport",
        counter="reportCount",
        job_type="reports_sync",
        message="Report",
        content_fields={"titleCid": "title", "descriptionCid": "description"},
    ),
)

KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)
BY_NAME: dict[str, RecordKind] = {k.name: k for k in KINDS}

ALL_KINDS_JOB = "blockchain_sync"  # the default job type: every kind at once
# Job type -> the kinds it syncs, in result order.
JOB_TYPES: dict[str, tuple[str, ...]] = {ALL_KINDS_JOB: KIND_NAMES, **{k.job_type: (k.name,) for k in KINDS}}
