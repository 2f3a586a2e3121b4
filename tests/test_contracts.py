"""The contracts: committed artifacts equal a fresh compile, and the ABIs are exactly
the interface of spec/contracts.md (events, getters, mutators, constructor)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devnet.artifacts import CONTRACT_NAMES, canonical_type, load_abi, load_artifact

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO.parent / "shared" / "spec" / "contracts.md"

# The interface, copied from spec/contracts.md. Events: name -> [(type, indexed, name)].
AUTH_EVENT = lambda who: [("address", False, who)]  # noqa: E731
EVENTS = {
    "AuthRegistry": {
        "UserAuthorized": AUTH_EVENT("user"),
        "UserRevoked": AUTH_EVENT("user"),
        "AdminAuthorized": AUTH_EVENT("admin"),
        "AdminRevoked": AUTH_EVENT("admin"),
    },
    "Proposals": {
        "ProposalCreated": [
            ("uint256", True, "proposalId"), ("address", True, "creator"), ("string", False, "titleCid"),
            ("string", False, "shortDescriptionCid"), ("string", False, "descriptionInDetailsCid"),
            ("uint256", False, "categoryId"), ("uint256", False, "expiredDate"),
        ],
        "ProposalVotedYes": [("uint256", True, "proposalId"), ("address", True, "voter")],
        "ProposalVotedNo": [("uint256", True, "proposalId"), ("address", True, "voter")],
        "ProposalStatusChanged": [("uint256", True, "proposalId"), ("bool", False, "activeStatus")],
        "ProposalExpired": [("uint256", True, "proposalId"), ("uint256", False, "expiredAt")],
    },
    "Petitions": {
        "PetitionCreated": [
            ("uint256", True, "petitionId"), ("address", True, "creator"), ("string", False, "titleCid"),
            ("string", False, "desCid"), ("uint256", False, "signaturesRequired"),
        ],
        "PetitionSigned": [("uint256", True, "petitionId"), ("address", True, "signer")],
        "PetitionCompleted": [("uint256", True, "petitionId")],
        "PetitionRemoved": [("uint256", True, "petitionId"), ("address", True, "remover")],
    },
    "Reports": {
        "ReportCreated": [
            ("uint256", True, "reportId"), ("address", True, "creator"), ("string", False, "titleCid"),
            ("string", False, "descriptionCid"),
        ],
        "ReportUpvoted": [("uint256", True, "reportId"), ("address", True, "voter")],
        "ReportDownvoted": [("uint256", True, "reportId"), ("address", True, "voter")],
        "ReportResolved": [("uint256", True, "reportId"), ("address", True, "resolver"), ("uint256", False, "resolvedAt")],
    },
}  # fmt: skip

# Views: signature -> return types (with names where the spec names them).
VIEWS = {
    "AuthRegistry": {
        "owner()": [("address", "")],
        "authorizedUsers(address)": [("bool", "")],
        "adminUsers(address)": [("bool", "")],
        "isAuthorized(address)": [("bool", "")],
        "isAdmin(address)": [("bool", "")],
    },
    "Proposals": {
        "proposalCount()": [("uint256", "")],
        "getProposal(uint256)": [
            ("string", "titleCid"), ("string", "shortDescriptionCid"), ("string", "descriptionInDetailsCid"),
            ("uint256", "yesVotes"), ("uint256", "noVotes"), ("address", "creator"), ("bool", "activeStatus"),
            ("uint256", "expiredDate"), ("uint256", "categoryId"), ("uint256", "createdAt"),
            ("uint256", "updatedAt"), ("bool", "removed"),
        ],
    },
    "Petitions": {
        "petitionCount()": [("uint256", "")],
        "getPetition(uint256)": [
            ("string", "titleCid"), ("string", "desCid"), ("uint256", "signaturesRequired"),
            ("uint256", "signaturesCount"), ("address", "creator"), ("bool", "completed"), ("bool", "removed"),
        ],
        "hasSigned(uint256,address)": [("bool", "")],
    },
    "Reports": {
        "reportCount()": [("uint256", "")],
        "getReport(uint256)": [
            ("string", "titleCid"), ("string", "descriptionCid"), ("uint256", "upvotes"), ("uint256", "downvotes"),
            ("address", "creator"), ("bool", "resolved"), ("uint256", "createdAt"), ("uint256", "resolvedAt"),
            ("bool", "removed"),
        ],
    },
}  # fmt: skip

# Mutators: signature -> return types.
MUTATORS = {
    "AuthRegistry": {
        "authorizeUser(address)": [], "revokeUser(address)": [],
        "authorizeAdmin(address)": [], "revokeAdmin(address)": [],
    },
    "Proposals": {
        "createProposal(string,string,string,uint256,uint256)": ["uint256"],
        "voteYes(uint256)": [], "voteNo(uint256)": [], "removeVote(uint256)": [],
        "changeProposalStatus(uint256,bool)": [], "extendProposalDeadline(uint256,uint256)": [],
        "expireProposal(uint256)": [], "removeProposal(uint256)": [],
    },
    "Petitions": {
        "createPetition(string,string,uint256)": ["uint256"],
        "signPetition(uint256)": [], "removePetition(uint256)": [],
    },
    "Reports": {
        "createReport(string,string)": ["uint256"],
        "upvoteReport(uint256)": [], "downvoteReport(uint256)": [], "removeVote(uint256)": [],
        "resolveReport(uint256)": [], "reopenReport(uint256)": [], "removeReport(uint256)": [],
    },
}  # fmt: skip

CONSTRUCTORS = {"AuthRegistry": [], "Proposals": ["address"], "Petitions": ["address"], "Reports": ["address"]}


def _sig(item: dict) -> str:
    return f"{item['name']}({','.join(canonical_type(p) for p in item['inputs'])})"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_committed_artifacts_equal_a_fresh_compile() -> None:
    result = subprocess.run(
        ["node", "contracts/compile.mjs", "--check"], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_artifacts_record_the_platform_compiler_settings() -> None:
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        assert artifact["contractName"] == name
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 1000
        assert artifact["compiler"]["version"].startswith("0.8.20+")
        settings = artifact["compiler"]["settings"]
        assert settings["optimizer"] == {"enabled": True, "runs": 200}
        assert settings["viaIR"] is True
        assert settings["evmVersion"]


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_events_are_exactly_the_spec(name: str) -> None:
    events = {
        item["name"]: [(p["type"], p["indexed"], p["name"]) for p in item["inputs"]]
        for item in load_abi(name)
        if item["type"] == "event"
    }
    assert events == EVENTS[name]
    assert not any(item.get("anonymous") for item in load_abi(name) if item["type"] == "event")


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_functions_are_exactly_the_spec(name: str) -> None:
    abi = load_abi(name)
    views = {
        _sig(i): [(o["type"], o["name"]) for o in i["outputs"]]
        for i in abi
        if i["type"] == "function" and i["stateMutability"] in ("view", "pure")
    }
    mutators = {
        _sig(i): [o["type"] for o in i["outputs"]]
        for i in abi
        if i["type"] == "function" and i["stateMutability"] not in ("view", "pure")
    }
    assert views == VIEWS[name]
    assert mutators == MUTATORS[name]
    assert all(i["stateMutability"] == "nonpayable" for i in abi if i["type"] == "function" and _sig(i) in mutators)
    ctor = [i for i in abi if i["type"] == "constructor"]
    assert [p["type"] for p in (ctor[0]["inputs"] if ctor else [])] == CONSTRUCTORS[name]
    assert not [i for i in abi if i["type"] in ("fallback", "receive")]


@pytest.mark.skipif(not SPEC.is_file(), reason="spec/contracts.md is not beside the repo")
def test_the_table_above_is_the_spec() -> None:
    """Every event and function name in spec/contracts.md is in the tables above, and back."""
    text = SPEC.read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    for name in CONTRACT_NAMES:
        section = next(s for s in sections if s.startswith(name))
        rows = [r for r in section.splitlines() if r.startswith("| ")]
        spec_events = {}
        for row in rows:
            if row.startswith("| event"):
                m = re.search(r"`(\w+)\(([^)]*)\)`", row)
                params = [p.split() for p in m.group(2).split(",")]
                spec_events[m.group(1)] = [(p[0], p[1] == "indexed", p[-1]) for p in params]
        assert spec_events == EVENTS[name], name
        functions = set()
        for row in rows:
            if row.startswith(("| view", "| mutators")):
                functions |= set(re.findall(r"`(\w+)\(", row))
        ours = {s.split("(")[0] for s in [*VIEWS[name], *MUTATORS[name]]}
        assert functions == ours, name
