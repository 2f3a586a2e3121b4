"""The seeder's own model of the contracts, and the record it keeps (Expected).

Owns: the business rules of AuthRegistry, Proposals, Petitions and Reports in
Python, exactly as the Solidity sources apply them (who may call what, when a
call reverts, what it changes, whether it emits events), and ``Expected``:
every entity's getter fields as the seeder's own actions made them, with the
provenance of its creating event and the list of changes. Nothing here reads
the chain; seed.py fills in the chain facts (transaction hashes, log indexes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
UINT256_MAX = 2**256 - 1

# Mutators that change state and emit no event (spec/contracts.md, "Silent changes").
SILENT = frozenset(
    {
        ("Proposals", "removeVote"),
        ("Proposals", "extendProposalDeadline"),
        ("Reports", "removeVote"),
        ("Reports", "reopenReport"),
        ("Reports", "removeReport"),
    }
)

# Entity kind (as used in Expected and expected.json) per contract.
KINDS = {"Proposals": "proposals", "Petitions": "petitions", "Reports": "reports"}
CREATORS = {"Proposals": "createProposal", "Petitions": "createPetition", "Reports": "createReport"}
CREATED_EVENTS = {"Proposals": "ProposalCreated", "Petitions": "PetitionCreated", "Reports": "ReportCreated"}

# Integer fields of the entity records; expected.json writes them as decimal strings.
INT_FIELDS = frozenset(
    {
        "id", "yesVotes", "noVotes", "expiredDate", "categoryId", "createdAt", "updatedAt",
        "signaturesRequired", "signaturesCount", "upvotes", "downvotes", "resolvedAt",
        "createdBlock", "createdLogIndex", "block",
    }
)  # fmt: skip


class Revert(Exception):
    """The contract would reject this call."""


@dataclass(frozen=True)
class Tx:
    """One mutator call: who sends it, to which contract, which function, which arguments."""

    sender: str
    contract: str
    function: str
    args: tuple = ()


@dataclass
class Change:
    """One transaction that changed an entity (its creation included)."""

    block: int
    function: str
    emitted: bool
    tx_hash: str = ""


@dataclass
class Entity:
    """An entity's getter fields (named as the getter names them), its votes, its changes."""

    kind: str
    id: int
    fields: dict[str, Any]
    votes: dict[str, int] = field(default_factory=dict)  # voter -> 1 yes/up, 2 no/down (petitions: 1 signed)
    changes: list[Change] = field(default_factory=list)
    created_tx_hash: str = ""
    created_log_index: int = -1

    @property
    def created_block(self) -> int:
        return self.changes[0].block


@dataclass
class Applied:
    """A transaction the model accepted: where it is mined, its event count, what it changed."""

    tx: Tx
    block: int
    events: int
    entity: Entity | None
    change: Change | None


class Platform:
    """The four contracts' state and rules. apply() changes state only when the call would succeed."""

    def __init__(self, owner: str):
        self.owner = owner
        self.users: set[str] = set()
        self.admins: set[str] = set()
        self.entities: dict[str, dict[int, Entity]] = {kind: {} for kind in KINDS.values()}

    # --- AuthRegistry views ---
    def is_authorized(self, who: str) -> bool:
        return who == self.owner or who in self.users or who in self.admins

    def is_admin(self, who: str) -> bool:
        return who == self.owner or who in self.admins

    def count(self, kind: str) -> int:
        return len(self.entities[kind])

    def apply(self, tx: Tx, block: int, timestamp: int) -> Applied:
        """Apply tx as mined in `block` at `timestamp`: how many events it emits, what it changed.

        Raises Revert (having changed nothing) when the contract would reject it.
        """
        handler = getattr(self, f"_{tx.contract}_{tx.function}", None)
        if handler is None:
            raise ValueError(f"the model has no rule for {tx.contract}.{tx.function}")
        events, entity = handler(tx.sender, timestamp, *tx.args)
        change = None
        if entity is not None:
            change = Change(block, tx.function, events > 0)
            entity.changes.append(change)
        return Applied(tx, block, events, entity, change)

    def would_apply(self, tx: Tx, timestamp: int) -> bool:
        """Whether apply() would accept tx (without changing anything)."""
        check = getattr(self, f"_check_{tx.contract}_{tx.function}", None)
        try:
            if check is not None:
                check(tx.sender, timestamp, *tx.args)
            return True
        except Revert:
            return False

    # --- AuthRegistry ---
    def _owner_only(self, sender: str) -> None:
        if sender != self.owner:
            raise Revert("AuthRegistry: not owner")

    def _check_AuthRegistry_authorizeUser(self, sender, ts, user):
        self._owner_only(sender)
        if user == ZERO_ADDRESS:
            raise Revert("AuthRegistry: zero address")

    def _AuthRegistry_authorizeUser(self, sender, ts, user):
        self._check_AuthRegistry_authorizeUser(sender, ts, user)
        self.users.add(user)
        return 1, None

    def _check_AuthRegistry_revokeUser(self, sender, ts, user):
        self._owner_only(sender)

    def _AuthRegistry_revokeUser(self, sender, ts, user):
        self._owner_only(sender)
        self.users.discard(user)
        return 1, None

    def _check_AuthRegistry_authorizeAdmin(self, sender, ts, admin):
        self._check_AuthRegistry_authorizeUser(sender, ts, admin)

    def _AuthRegistry_authorizeAdmin(self, sender, ts, admin):
        self._check_AuthRegistry_authorizeUser(sender, ts, admin)
        self.admins.add(admin)
        return 1, None

    def _check_AuthRegistry_revokeAdmin(self, sender, ts, admin):
        self._owner_only(sender)

    def _AuthRegistry_revokeAdmin(self, sender, ts, admin):
        self._owner_only(sender)
        self.admins.discard(admin)
        return 1, None

    # --- shared checks ---
    def _require_authorized(self, sender: str) -> None:
        if not self.is_authorized(sender):
            raise Revert("not authorized")

    def _require_admin(self, sender: str) -> None:
        if not self.is_admin(sender):
            raise Revert("not admin")

    def _existing(self, kind: str, entity_id: int) -> Entity:
        entity = self.entities[kind].get(entity_id)
        if entity is None:
            raise Revert(f"no such {kind[:-1]} {entity_id}")
        return entity

    def _live(self, kind: str, entity_id: int) -> Entity:
        entity = self._existing(kind, entity_id)
        if entity.fields["removed"]:
            raise Revert("removed")
        return entity

    def _new(self, kind: str, fields: dict[str, Any]) -> Entity:
        entity_id = self.count(kind) + 1
        entity = Entity(kind, entity_id, fields)
        self.entities[kind][entity_id] = entity
        return entity

    # --- Proposals ---
    def _check_Proposals_createProposal(self, sender, ts, title, short, details, category_id, expired_date):
        self._require_admin(sender)
        if not title:
            raise Revert("empty title")
        if not expired_date > ts:
            raise Revert("expiry in the past")

    def _Proposals_createProposal(self, sender, ts, title, short, details, category_id, expired_date):
        self._check_Proposals_createProposal(sender, ts, title, short, details, category_id, expired_date)
        entity = self._new(
            "proposals",
            {
                "titleCid": title,
                "shortDescriptionCid": short,
                "descriptionInDetailsCid": details,
                "yesVotes": 0,
                "noVotes": 0,
                "creator": sender,
                "activeStatus": True,
                "expiredDate": expired_date,
                "categoryId": category_id,
                "createdAt": ts,
                "updatedAt": ts,
                "removed": False,
            },
        )
        return 1, entity

    def _check_proposal_vote(self, sender, ts, proposal_id):
        self._require_authorized(sender)
        p = self._live("proposals", proposal_id)
        if not p.fields["activeStatus"]:
            raise Revert("not active")
        if not ts < p.fields["expiredDate"]:
            raise Revert("expired")
        if p.votes.get(sender):
            raise Revert("already voted")
        return p

    def _proposal_vote(self, sender, ts, proposal_id, vote):
        p = self._check_proposal_vote(sender, ts, proposal_id)
        p.votes[sender] = vote
        p.fields["yesVotes" if vote == 1 else "noVotes"] += 1
        p.fields["updatedAt"] = ts
        return 1, p

    _check_Proposals_voteYes = _check_proposal_vote
    _check_Proposals_voteNo = _check_proposal_vote

    def _Proposals_voteYes(self, sender, ts, proposal_id):
        return self._proposal_vote(sender, ts, proposal_id, 1)

    def _Proposals_voteNo(self, sender, ts, proposal_id):
        return self._proposal_vote(sender, ts, proposal_id, 2)

    def _check_Proposals_removeVote(self, sender, ts, proposal_id):
        p = self._live("proposals", proposal_id)
        if not p.votes.get(sender):
            raise Revert("no vote to remove")
        return p

    def _Proposals_removeVote(self, sender, ts, proposal_id):
        p = self._check_Proposals_removeVote(sender, ts, proposal_id)
        vote = p.votes.pop(sender)
        p.fields["yesVotes" if vote == 1 else "noVotes"] -= 1
        p.fields["updatedAt"] = ts
        return 0, p

    def _check_Proposals_changeProposalStatus(self, sender, ts, proposal_id, active):
        self._require_admin(sender)
        return self._live("proposals", proposal_id)

    def _Proposals_changeProposalStatus(self, sender, ts, proposal_id, active):
        p = self._check_Proposals_changeProposalStatus(sender, ts, proposal_id, active)
        p.fields["activeStatus"] = active
        p.fields["updatedAt"] = ts
        return 1, p

    def _check_Proposals_extendProposalDeadline(self, sender, ts, proposal_id, new_date):
        self._require_admin(sender)
        p = self._live("proposals", proposal_id)
        if not new_date > p.fields["expiredDate"]:
            raise Revert("deadline not later")
        return p

    def _Proposals_extendProposalDeadline(self, sender, ts, proposal_id, new_date):
        p = self._check_Proposals_extendProposalDeadline(sender, ts, proposal_id, new_date)
        p.fields["expiredDate"] = new_date
        p.fields["updatedAt"] = ts
        return 0, p

    def _check_Proposals_expireProposal(self, sender, ts, proposal_id):
        self._require_admin(sender)
        return self._live("proposals", proposal_id)

    def _Proposals_expireProposal(self, sender, ts, proposal_id):
        p = self._check_Proposals_expireProposal(sender, ts, proposal_id)
        p.fields["activeStatus"] = False
        p.fields["expiredDate"] = ts
        p.fields["updatedAt"] = ts
        return 1, p

    def _check_Proposals_removeProposal(self, sender, ts, proposal_id):
        p = self._live("proposals", proposal_id)
        if sender != p.fields["creator"] and not self.is_admin(sender):
            raise Revert("not creator or admin")
        return p

    def _Proposals_removeProposal(self, sender, ts, proposal_id):
        p = self._check_Proposals_removeProposal(sender, ts, proposal_id)
        p.fields["removed"] = True
        p.fields["activeStatus"] = False
        p.fields["updatedAt"] = ts
        return 1, p

    # --- Petitions ---
    def _check_Petitions_createPetition(self, sender, ts, title, description, required):
        self._require_authorized(sender)
        if not title:
            raise Revert("empty title")
        if required == 0:
            raise Revert("zero signatures required")

    def _Petitions_createPetition(self, sender, ts, title, description, required):
        self._check_Petitions_createPetition(sender, ts, title, description, required)
        entity = self._new(
            "petitions",
            {
                "titleCid": title,
                "desCid": description,
                "signaturesRequired": required,
                "signaturesCount": 0,
                "creator": sender,
                "completed": False,
                "removed": False,
            },
        )
        return 1, entity

    def _check_Petitions_signPetition(self, sender, ts, petition_id):
        self._require_authorized(sender)
        p = self._existing("petitions", petition_id)
        if p.fields["removed"]:
            raise Revert("removed")
        if p.fields["completed"]:
            raise Revert("completed")
        if p.votes.get(sender):
            raise Revert("already signed")
        return p

    def _Petitions_signPetition(self, sender, ts, petition_id):
        p = self._check_Petitions_signPetition(sender, ts, petition_id)
        p.votes[sender] = 1
        p.fields["signaturesCount"] += 1
        if p.fields["signaturesCount"] >= p.fields["signaturesRequired"]:
            p.fields["completed"] = True
            return 2, p  # PetitionSigned and PetitionCompleted
        return 1, p

    def _check_Petitions_removePetition(self, sender, ts, petition_id):
        p = self._existing("petitions", petition_id)
        if p.fields["removed"]:
            raise Revert("removed")
        if sender != p.fields["creator"] and not self.is_admin(sender):
            raise Revert("not creator or admin")
        return p

    def _Petitions_removePetition(self, sender, ts, petition_id):
        p = self._check_Petitions_removePetition(sender, ts, petition_id)
        p.fields["removed"] = True
        return 1, p

    # --- Reports ---
    def _check_Reports_createReport(self, sender, ts, title, description):
        self._require_authorized(sender)
        if not title:
            raise Revert("empty title")

    def _Reports_createReport(self, sender, ts, title, description):
        self._check_Reports_createReport(sender, ts, title, description)
        entity = self._new(
            "reports",
            {
                "titleCid": title,
                "descriptionCid": description,
                "upvotes": 0,
                "downvotes": 0,
                "creator": sender,
                "resolved": False,
                "createdAt": ts,
                "resolvedAt": 0,
                "removed": False,
            },
        )
        return 1, entity

    def _check_report_vote(self, sender, ts, report_id):
        self._require_authorized(sender)
        r = self._live("reports", report_id)
        if r.votes.get(sender):
            raise Revert("already voted")
        return r

    def _report_vote(self, sender, ts, report_id, vote):
        r = self._check_report_vote(sender, ts, report_id)
        r.votes[sender] = vote
        r.fields["upvotes" if vote == 1 else "downvotes"] += 1
        return 1, r

    _check_Reports_upvoteReport = _check_report_vote
    _check_Reports_downvoteReport = _check_report_vote

    def _Reports_upvoteReport(self, sender, ts, report_id):
        return self._report_vote(sender, ts, report_id, 1)

    def _Reports_downvoteReport(self, sender, ts, report_id):
        return self._report_vote(sender, ts, report_id, 2)

    def _check_Reports_removeVote(self, sender, ts, report_id):
        r = self._live("reports", report_id)
        if not r.votes.get(sender):
            raise Revert("no vote to remove")
        return r

    def _Reports_removeVote(self, sender, ts, report_id):
        r = self._check_Reports_removeVote(sender, ts, report_id)
        vote = r.votes.pop(sender)
        r.fields["upvotes" if vote == 1 else "downvotes"] -= 1
        return 0, r

    def _check_Reports_resolveReport(self, sender, ts, report_id):
        self._require_admin(sender)
        r = self._live("reports", report_id)
        if r.fields["resolved"]:
            raise Revert("already resolved")
        return r

    def _Reports_resolveReport(self, sender, ts, report_id):
        r = self._check_Reports_resolveReport(sender, ts, report_id)
        r.fields["resolved"] = True
        r.fields["resolvedAt"] = ts
        return 1, r

    def _check_Reports_reopenReport(self, sender, ts, report_id):
        self._require_admin(sender)
        r = self._live("reports", report_id)
        if not r.fields["resolved"]:
            raise Revert("not resolved")
        return r

    def _Reports_reopenReport(self, sender, ts, report_id):
        r = self._check_Reports_reopenReport(sender, ts, report_id)
        r.fields["resolved"] = False
        r.fields["resolvedAt"] = 0
        return 0, r

    def _check_Reports_removeReport(self, sender, ts, report_id):
        r = self._live("reports", report_id)
        if sender != r.fields["creator"] and not self.is_admin(sender):
            raise Revert("not creator or admin")
        return r

    def _Reports_removeReport(self, sender, ts, report_id):
        r = self._check_Reports_removeReport(sender, ts, report_id)
        r.fields["removed"] = True
        return 0, r


def entity_record(entity: Entity) -> dict[str, Any]:
    """The record Expected keeps for an entity: id, getter fields, provenance, changes."""
    return {
        "id": entity.id,
        **entity.fields,
        "createdBlock": entity.created_block,
        "createdTxHash": entity.created_tx_hash,
        "createdLogIndex": entity.created_log_index,
        "changedBlocks": [
            {"block": c.block, "txHash": c.tx_hash, "function": c.function, "emitted": c.emitted}
            for c in entity.changes
        ],
    }


@dataclass
class Expected:
    """What the seeder wrote, from its own model: per kind, id -> record (see entity_record).

    Integers are Python ints and addresses EIP-55. ``changedBlocks`` lists every
    transaction that changed the entity, its creation first, each with
    ``emitted`` false for the event-less mutators.
    """

    scale: str
    chain_id: int
    first_block: int  # the scenario's first block (after the deployment)
    head_block: int
    genesis_timestamp: int  # block n was mined at genesis_timestamp + block_interval * n
    block_interval: int
    owner: str
    admins: list[str]
    users: list[str]
    proposals: dict[int, dict[str, Any]]
    petitions: dict[int, dict[str, Any]]
    reports: dict[int, dict[str, Any]]
    counts: dict[str, int]

    def entities(self, kind: str) -> dict[int, dict[str, Any]]:
        return {"proposals": self.proposals, "petitions": self.petitions, "reports": self.reports}[kind]

    def to_json(self) -> str:
        def encode(record: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for key, value in record.items():
                if key == "changedBlocks":
                    value = [encode(c) for c in value]
                elif key in INT_FIELDS:
                    value = str(value)
                out[key] = value
            return out

        doc = {
            "scale": self.scale,
            "chainId": self.chain_id,
            "firstBlock": str(self.first_block),
            "headBlock": str(self.head_block),
            "genesisTimestamp": str(self.genesis_timestamp),
            "blockInterval": self.block_interval,
            "owner": self.owner,
            "admins": self.admins,
            "users": self.users,
            "counts": self.counts,
            "proposals": [encode(r) for _, r in sorted(self.proposals.items())],
            "petitions": [encode(r) for _, r in sorted(self.petitions.items())],
            "reports": [encode(r) for _, r in sorted(self.reports.items())],
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Expected:
        doc = json.loads(text)

        def decode(record: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for key, value in record.items():
                if key == "changedBlocks":
                    value = [decode(c) for c in value]
                elif key in INT_FIELDS:
                    value = int(value)
                out[key] = value
            return out

        def by_id(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
            return {r["id"]: r for r in map(decode, records)}

        return cls(
            scale=doc["scale"],
            chain_id=doc["chainId"],
            first_block=int(doc["firstBlock"]),
            head_block=int(doc["headBlock"]),
            genesis_timestamp=int(doc["genesisTimestamp"]),
            block_interval=doc["blockInterval"],
            owner=doc["owner"],
            admins=doc["admins"],
            users=doc["users"],
            proposals=by_id(doc["proposals"]),
            petitions=by_id(doc["petitions"]),
            reports=by_id(doc["reports"]),
            counts=doc["counts"],
        )

    def write(self, path: Path) -> None:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)


def load_expected(path: Path) -> Expected:
    return Expected.from_json(Path(path).read_text())
