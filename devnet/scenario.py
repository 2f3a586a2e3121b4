"""What the seeder does on chain, block by block: a deterministic scenario per scale.

Owns: the cast (owner = account 0, admins, authorized users, one user and one
admin who are later revoked), the mix of mutator calls, the values that test
edge cases (uint256 above 2^53, above 2^64 and next to 2^256-1, empty and long
strings), the block numbers (gaps between busy blocks) and a tail of
event-less changes to old entities. Every call is checked against the model
and applied to it as it is planned, so a scenario only holds calls that
succeed. The same scale and accounts always give the same scenario.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass, field

from devnet.model import SILENT, UINT256_MAX, Applied, Platform, Tx

# Gas limit sent with each transaction (explicit, so nothing is estimated; the
# heaviest call, a proposal with long strings, uses about 400k).
GAS = {"createProposal": 700_000, "createPetition": 450_000, "createReport": 450_000}
DEFAULT_GAS = 150_000
BLOCK_GAS_LIMIT = 30_000_000  # anvil is started with this; a block's gas limits must fit

BIG_VALUES = (2**53 + 1, 2**64 + 1, 2**128 + 12_345, UINT256_MAX - 1, UINT256_MAX)


@dataclass(frozen=True)
class Phase:
    """A stretch of the chain: how many calls, how crowded the blocks, how many blocks."""

    creates_each: int  # proposals, petitions and reports each
    other_calls: int  # votes, signatures, status changes, removals...
    txs_per_block: tuple[int, int]  # range of calls in a busy block
    blocks: int  # about how many blocks the phase spans (busy and empty)
    removals: bool = True  # False: nothing is removed (keeps a phase's few entities alive)


@dataclass(frozen=True)
class ScaleConfig:
    name: str
    seed: int
    phases: tuple[Phase, ...]
    quiet_blocks: int  # empty blocks between the last phase and the silent tail
    tail_gap: tuple[int, int]  # empty blocks between the silent tail's blocks
    build_history: int  # block states anvil keeps while seeding, and the saved state holds (0: none)
    serve_history: int  # block states a devnet started from the saved state keeps for new blocks


# anvil 1.7.1 rebuilds the whole state trie for every block it mines, empty or
# not, so a block costs about 1 microsecond per storage slot in the chain (see
# docs/devnet.md). The bench therefore spends its 50,000 blocks while the state
# is small (phase 1: one entity of each kind, activity every ~200 blocks) and
# packs the bulk of its events into crowded blocks at the end (phase 2).
SCALES = {
    "demo": ScaleConfig(
        "demo",
        seed=2025,
        phases=(Phase(creates_each=120, other_calls=1_000, txs_per_block=(1, 6), blocks=2_200),),
        quiet_blocks=40,
        tail_gap=(8, 20),
        build_history=256,
        serve_history=256,
    ),
    "bench": ScaleConfig(
        "bench",
        seed=50_000,
        phases=(
            Phase(creates_each=1, other_calls=500, txs_per_block=(1, 3), blocks=49_900, removals=False),
            Phase(creates_each=1_300, other_calls=18_500, txs_per_block=(120, 160), blocks=150),
        ),
        quiet_blocks=2,
        tail_gap=(1, 3),
        build_history=0,
        serve_history=16,
    ),
    # For the memory goal of `make bench --memory`: ten times the bench's events
    # (about 200,000) in blocks as full as anvil's gas limit allows.
    "memory": ScaleConfig(
        "memory",
        seed=200_000,
        phases=(
            Phase(creates_each=1, other_calls=500, txs_per_block=(1, 3), blocks=49_700),
            Phase(creates_each=13_000, other_calls=185_000, txs_per_block=(350, 450), blocks=600),
        ),
        quiet_blocks=2,
        tail_gap=(1, 3),
        build_history=0,
        serve_history=16,
    ),
}


@dataclass
class PlannedBlock:
    number: int
    timestamp: int
    txs: list[Applied] = field(default_factory=list)


@dataclass
class Scenario:
    scale: str
    start_block: int
    head: int  # the chain is mined up to here (empty blocks after the last busy one)
    blocks: list[PlannedBlock]  # only blocks with transactions, in order
    platform: Platform  # the model after every call

    @property
    def txs(self) -> list[Applied]:
        return [a for b in self.blocks for a in b.txs]


# The kinds' letters in content_cid's parts, and the parts create() uses for each kind.
_KIND_NAMES = {"p": "Proposal", "t": "Petition", "r": "Report"}
_CID_FIELDS = {"p": ("title", "short", "details"), "t": ("title", "description"), "r": ("title", "description")}
_LONG_PARTS = 5  # the "ipfs://a-b-c-d-e" proposal field joins this many CIDs


def cid_content(*parts: object) -> str:
    """The text the scenario puts under content_cid(*parts), e.g. "Proposal 7 title".

    Descriptions get a second, non-ASCII line, so a reader must decode UTF-8.
    """
    kind, *rest = parts
    text = " ".join([_KIND_NAMES.get(str(kind), str(kind)), *map(str, rest)])
    if rest and rest[-1] in ("short", "details", "description"):
        text += "\nÜnïcødé ✓ — second line"
    return text


def raw_cid(content: bytes) -> str:
    """The CIDv1 of content as one raw block: multibase 'b' + base32 of 0x01 0x55 0x12 0x20 + sha256."""
    digest = hashlib.sha256(content).digest()
    return "b" + base64.b32encode(bytes((0x01, 0x55, 0x12, 0x20)) + digest).decode().lower().rstrip("=")


def content_cid(*parts: object) -> str:
    """A real CID ('bafkrei…', raw sha2-256) of cid_content(*parts): different for each parts."""
    return raw_cid(cid_content(*parts).encode())


def scenario_contents(counts: dict[str, int]) -> dict[str, str]:
    """CID -> text for every CID a scenario with these entity counts can put on chain.

    counts: {"proposals": n, "petitions": n, "reports": n} (Expected.counts). What
    an IPFS gateway serving the devnet's content serves.
    """
    kinds = {"p": "proposals", "t": "petitions", "r": "reports"}
    parts: list[tuple[object, ...]] = []
    for letter, kind in kinds.items():
        for i in range(1, counts.get(kind, 0) + 1):
            parts += [(letter, i, name) for name in _CID_FIELDS[letter]]
            if letter == "p":
                parts += [(letter, i, k) for k in range(_LONG_PARTS)]
    return {content_cid(*p): cid_content(*p) for p in parts}


class _Planner:
    """Picks calls at random (seeded), keeps those the model accepts, and applies them."""

    def __init__(self, cfg: ScaleConfig, accounts: list[str], start_block: int, genesis_ts: int, interval: int):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.owner = accounts[0]
        self.admins = accounts[1:4]
        self.users = accounts[4:28]
        self.temp_user = accounts[28]  # authorized, later revoked
        self.temp_admin = accounts[29]  # admin, later revoked
        self.everyone = accounts[:30]
        self.platform = Platform(self.owner)
        self.genesis_ts = genesis_ts
        self.interval = interval
        self.block = PlannedBlock(start_block, self.timestamp(start_block))
        self.block_gas = 0
        self.blocks: list[PlannedBlock] = []

    def timestamp(self, block: int) -> int:
        return self.genesis_ts + self.interval * block

    def block_is_full(self) -> bool:
        return self.block_gas + max(GAS.values()) > BLOCK_GAS_LIMIT

    def try_call(self, tx: Tx) -> bool:
        ts = self.timestamp(self.block.number)
        if self.block_gas + gas_for(tx) > BLOCK_GAS_LIMIT or not self.platform.would_apply(tx, ts):
            return False
        self.block.txs.append(self.platform.apply(tx, self.block.number, ts))
        self.block_gas += gas_for(tx)
        return True

    def close_block(self, gap: int) -> None:
        """End the current block and start the next one `gap` empty blocks later."""
        if self.block.txs:
            self.blocks.append(self.block)
        self.block = PlannedBlock(self.block.number + 1 + gap, self.timestamp(self.block.number + 1 + gap))
        self.block_gas = 0

    # --- picking ---
    def pick_id(self, kind: str) -> int | None:
        n = self.platform.count(kind)
        if n == 0:
            return None
        if self.rng.random() < 0.7:  # mostly recent entities
            return max(1, n - int(self.rng.expovariate(1 / 12)))
        return self.rng.randint(1, n)

    def admin(self) -> str:
        return self.rng.choice([self.owner, *self.admins, self.temp_admin])

    def anyone(self) -> str:
        return self.rng.choice(self.everyone)

    def creator_or_admin(self, kind: str, entity_id: int) -> str:
        if self.rng.random() < 0.6:
            return self.platform.entities[kind][entity_id].fields["creator"]
        return self.admin()

    def voter_of(self, kind: str, entity_id: int) -> str | None:
        votes = self.platform.entities[kind][entity_id].votes
        return self.rng.choice(list(votes)) if votes else None

    # --- creates ---
    def create(self, kind: str) -> Tx:
        i = self.platform.count(kind) + 1
        rng = self.rng
        if kind == "proposals":
            ts = self.timestamp(self.block.number)
            category = rng.choice(BIG_VALUES + (0,)) if i % 9 == 0 else rng.randint(1, 12)
            mode = rng.random()
            if i % 11 == 0:
                expired = rng.choice(BIG_VALUES)
            elif mode < 0.2:  # runs out while the chain is seeded
                expired = ts + self.interval * rng.randint(20, 400)
            else:
                expired = ts + 86_400 * rng.randint(7, 120)
            details = content_cid("p", i, "details")
            if i % 37 == 0:
                details = ""
            elif i % 41 == 0:
                details = "ipfs://" + "-".join(content_cid("p", i, k) for k in range(_LONG_PARTS))  # > 256 bytes
            title = content_cid("p", i, "title") if i % 53 else "Q✓ ünïcødé title " + content_cid("p", i)
            args = (title, content_cid("p", i, "short"), details, category, expired)
            return Tx(self.admin(), "Proposals", "createProposal", args)
        if kind == "petitions":
            if i % 10 == 0:
                required = rng.choice(BIG_VALUES)
            elif i % 7 == 0:
                required = 1
            else:
                required = rng.randint(2, 7)
            description = content_cid("t", i, "description") if i % 29 else ""
            args = (content_cid("t", i, "title"), description, required)
            return Tx(rng.choice([*self.users, *self.admins]), "Petitions", "createPetition", args)
        description = content_cid("r", i, "description") if i % 31 else ""
        args = (content_cid("r", i, "title"), description)
        return Tx(rng.choice([*self.users, *self.admins, self.temp_user]), "Reports", "createReport", args)

    # --- everything else ---
    def other(self, removals: bool = True) -> Tx | None:
        tx = self._other()
        if tx is not None and not removals and tx.function.startswith("remove") and tx.function != "removeVote":
            return None
        return tx

    def _other(self) -> Tx | None:
        rng = self.rng
        kind = rng.choices(["proposals", "petitions", "reports"], weights=[10, 6, 9])[0]
        entity_id = self.pick_id(kind)
        if entity_id is None:
            return None
        entity = self.platform.entities[kind][entity_id]
        if kind == "proposals":
            fn = rng.choices(
                ["voteYes", "voteNo", "removeVote", "changeProposalStatus", "extendProposalDeadline",
                 "expireProposal", "removeProposal"],
                weights=[30, 18, 8, 5, 5, 2, 2],
            )[0]  # fmt: skip
            if fn in ("voteYes", "voteNo"):
                return Tx(self.anyone(), "Proposals", fn, (entity_id,))
            if fn == "removeVote":
                voter = self.voter_of(kind, entity_id)
                return voter and Tx(voter, "Proposals", fn, (entity_id,))
            if fn == "changeProposalStatus":
                active = not entity.fields["activeStatus"] if rng.random() < 0.85 else entity.fields["activeStatus"]
                return Tx(self.admin(), "Proposals", fn, (entity_id, active))
            if fn == "extendProposalDeadline":
                current = entity.fields["expiredDate"]
                later = rng.choice([current + 86_400 * rng.randint(1, 60), 2**64 + rng.randint(1, 10**6), UINT256_MAX])
                return Tx(self.admin(), "Proposals", fn, (entity_id, later)) if current < later <= UINT256_MAX else None
            if fn == "expireProposal":
                return Tx(self.admin(), "Proposals", fn, (entity_id,))
            return Tx(self.creator_or_admin(kind, entity_id), "Proposals", fn, (entity_id,))
        if kind == "petitions":
            if rng.random() < 0.93:
                return Tx(self.anyone(), "Petitions", "signPetition", (entity_id,))
            return Tx(self.creator_or_admin(kind, entity_id), "Petitions", "removePetition", (entity_id,))
        fn = rng.choices(
            ["upvoteReport", "downvoteReport", "removeVote", "resolveReport", "reopenReport", "removeReport"],
            weights=[30, 18, 9, 7, 4, 2],
        )[0]
        if fn in ("upvoteReport", "downvoteReport"):
            return Tx(self.anyone(), "Reports", fn, (entity_id,))
        if fn == "removeVote":
            voter = self.voter_of(kind, entity_id)
            return voter and Tx(voter, "Reports", fn, (entity_id,))
        if fn in ("resolveReport", "reopenReport"):
            return Tx(self.admin(), "Reports", fn, (entity_id,))
        return Tx(self.creator_or_admin(kind, entity_id), "Reports", fn, (entity_id,))

    def gap(self, mean: float) -> int:
        return int(self.rng.expovariate(1 / mean)) if mean > 0 else 0


def _silent_tail(planner: _Planner) -> None:
    """Event-less changes to entities created long before, one per block, far from other activity.

    A range holding one of these blocks and not the entity's creation exists for
    each silent mutator, so a sync that reads only events can be caught.
    """
    platform = planner.platform
    p = planner
    wanted = [
        ("proposals", "removeVote"),
        ("proposals", "extendProposalDeadline"),
        ("reports", "removeVote"),
        ("reports", "reopenReport"),
        ("reports", "removeReport"),
        ("proposals", "removeVote"),
        ("reports", "removeVote"),
    ]
    for kind, fn in wanted:
        contract = "Proposals" if kind == "proposals" else "Reports"
        for entity_id in range(1, platform.count(kind) + 1):
            entity = platform.entities[kind][entity_id]
            if entity.fields["removed"]:
                continue
            if fn == "removeVote":
                voter = next(iter(entity.votes), None)
                tx = voter and Tx(voter, contract, fn, (entity_id,))
            elif fn == "extendProposalDeadline":
                tx = Tx(p.admins[0], contract, fn, (entity_id, UINT256_MAX))
            else:
                tx = Tx(p.admins[0], contract, fn, (entity_id,))
            if tx and p.try_call(tx):
                break
        p.close_block(p.rng.randint(*p.cfg.tail_gap))


def _run_phase(p: _Planner, phase: Phase, total_calls: int, calls_before: int) -> None:
    """Plan one phase: creates spread evenly among the other calls, blocks spaced to span phase.blocks."""
    creates_left = {kind: phase.creates_each for kind in ("proposals", "petitions", "reports")}
    others_left = phase.other_calls
    end_block = p.block.number + phase.blocks
    low, high = phase.txs_per_block
    round_no = idle_rounds = 0
    while sum(creates_left.values()) + others_left > 0:
        round_no += 1
        calls_left = sum(creates_left.values()) + others_left
        done = (calls_before + (phase.creates_each * 3 + phase.other_calls - calls_left)) / total_calls
        if done > 0.35 and p.temp_user in p.platform.users:
            p.try_call(Tx(p.owner, "AuthRegistry", "revokeUser", (p.temp_user,)))
        if done > 0.6 and p.temp_admin in p.platform.admins:
            p.try_call(Tx(p.owner, "AuthRegistry", "revokeAdmin", (p.temp_admin,)))
        n = p.rng.randint(low, high) if round_no % 50 else max(high, 25)  # now and then a crowded block
        for _ in range(n):
            if p.block_is_full():
                break
            creates = sum(creates_left.values())
            missing = [k for k, n in creates_left.items() if n and p.platform.count(k) == 0]
            if missing or (creates and p.rng.random() < creates / (creates + others_left)):
                kind = (
                    missing[0] if missing else p.rng.choices(list(creates_left), weights=list(creates_left.values()))[0]
                )
                if p.try_call(p.create(kind)):
                    creates_left[kind] -= 1
                continue
            for _attempt in range(10):
                tx = p.other(phase.removals)
                if tx and p.try_call(tx):
                    others_left -= 1
                    break
        if not p.block.txs:
            idle_rounds += 1
            if idle_rounds > 100:  # nothing the model accepts any more: end the phase
                break
        else:
            idle_rounds = 0
        # Space the remaining rounds evenly over the blocks the phase has left.
        calls_left = sum(creates_left.values()) + others_left
        rounds_left = max(1.0, calls_left / ((low + high) / 2))
        p.close_block(p.gap(max(0.0, (end_block - p.block.number) / rounds_left - 1)))
    if p.block.number < end_block:  # the phase spans its blocks even when its calls ran out early
        p.close_block(end_block - p.block.number - 1)


def build_scenario(scale: str, accounts: list[str], *, start_block: int, genesis_ts: int, interval: int) -> Scenario:
    """The scenario for `scale` ("demo" or "bench") starting at block `start_block`.

    accounts: at least 30 unlocked accounts (account 0 deployed the contracts).
    Block n is mined at genesis_ts + interval * n.
    """
    cfg = SCALES[scale]
    if len(accounts) < 30:
        raise ValueError(f"the scenario needs 30 accounts, the node has {len(accounts)}")
    p = _Planner(cfg, accounts, start_block, genesis_ts, interval)

    # The cast: admins and authorized users, in the first block.
    for admin in [*p.admins, p.temp_admin]:
        p.try_call(Tx(p.owner, "AuthRegistry", "authorizeAdmin", (admin,)))
    for user in [*p.users, p.temp_user]:
        p.try_call(Tx(p.owner, "AuthRegistry", "authorizeUser", (user,)))
    p.close_block(0)

    total = sum(ph.creates_each * 3 + ph.other_calls for ph in cfg.phases)
    before = 0
    for phase in cfg.phases:
        _run_phase(p, phase, total, before)
        before += phase.creates_each * 3 + phase.other_calls

    p.close_block(cfg.quiet_blocks)  # a quiet stretch, then the silent tail
    _silent_tail(p)
    head = p.block.number - 1
    return Scenario(scale, start_block, head, p.blocks, p.platform)


def gas_for(tx: Tx) -> int:
    return GAS.get(tx.function, DEFAULT_GAS)


def is_silent(tx: Tx) -> bool:
    return (tx.contract, tx.function) in SILENT


def platform_at(scenario: Scenario, block: int) -> Platform:
    """The model as of the end of `block`: the scenario's calls up to that block, replayed."""
    platform = Platform(scenario.platform.owner)
    for planned in scenario.blocks:
        if planned.number > block:
            break
        for applied in planned.txs:
            platform.apply(applied.tx, planned.number, planned.timestamp)
    return platform
