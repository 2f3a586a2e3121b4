"""The sync engine: which blocks to read, and reading them.

Owns: the range rules of design.md (``resolve_range``), the log scan over the
platform's contracts in chunks (``scan_logs``), and reading each touched
entity's state at ``to_block`` through its getter in JSON-RPC batches
(``read_entities``). Knows nothing of jobs or stores: it reports progress and
hands records to the callbacks it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from server.contracts import Deployment, EntityKind
from server.errors import ChainsyncError, invalid_argument
from server.rpc import JsonRpc

DEFAULT_BLOCKS_BACK = 1000
GETTER_PAGE = 200  # entities read per JSON-RPC batch round (split into arrays of 100)


@dataclass(frozen=True)
class BlockRange:
    from_block: int  # inclusive
    to_block: int  # inclusive

    @property
    def size(self) -> int:
        return self.to_block - self.from_block + 1

    def chunks(self, size: int) -> Iterator[BlockRange]:
        start = self.from_block
        while start <= self.to_block:
            end = min(self.to_block, start + size - 1)
            yield BlockRange(start, end)
            start = end + 1


def resolve_range(request: dict[str, Any], head: int, earliest: int, confirmations: int) -> BlockRange:
    """The inclusive block range a request asks for, given the chain head.

    ``blocksBack = N``: to = head - confirmations, from = max(earliest, to - N).
    ``isFullSync``: from the earliest deployment block to head - confirmations.
    ``fromBlock``/``toBlock``: as given, checked against the head.
    """
    safe_head = head - confirmations
    if safe_head < 0:
        raise ChainsyncError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "NOT_ENOUGH_CONFIRMATIONS",
            f"the chain head is block {head}, fewer than the {confirmations} confirmations asked for",
        )
    if "fromBlock" in request or "toBlock" in request:
        to_block = int(request.get("toBlock", safe_head))
        from_block = int(request.get("fromBlock", earliest))
        if to_block > safe_head:
            raise invalid_argument(
                "toBlock", f"{to_block} is past the confirmed head {safe_head} (head {head}, {confirmations} confirmations)",
                reason="INVALID_RANGE",
            )
        if from_block > to_block:
            raise invalid_argument("fromBlock", f"{from_block} is after toBlock {to_block}", reason="INVALID_RANGE")
        return BlockRange(from_block, to_block)
    if request.get("isFullSync"):
        return BlockRange(min(earliest, safe_head), safe_head)
    blocks_back = int(request.get("blocksBack", DEFAULT_BLOCKS_BACK))
    return BlockRange(max(min(earliest, safe_head), safe_head - blocks_back), safe_head)


@dataclass
class SyncStats:
    blocks_total: int = 0
    blocks_done: int = 0
    events_found: int = 0
    records_total: int = 0
    records_done: int = 0
    started: float = field(default_factory=time.monotonic)

    def percent(self) -> int:
        """Share of real work done: the log scan weighs 70, the getter reads 30."""
        scan = self.blocks_done / self.blocks_total if self.blocks_total else 1.0
        reads = self.records_done / self.records_total if self.records_total else 0.0
        return min(99, int(70 * scan + 30 * reads))

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.blocks_done / elapsed
        left = 1 - self.percent() / 100
        done = self.percent() / 100
        return {
            "blocksTotal": self.blocks_total,
            "blocksDone": self.blocks_done,
            "eventsFound": self.events_found,
            "recordsTotal": self.records_total,
            "recordsDone": self.records_done,
            "blocksPerSecond": round(rate, 1),
            "etaSeconds": round(elapsed * left / done, 1) if done > 0 else 0.0,
        }


class SyncJournal(Protocol):
    """Where the engine saves its work as it goes, so that a job can resume.

    ``checkpoint`` holds ``scannedTo`` (the last block whose logs are saved) and
    ``events``; ``save_scan`` saves one chunk's touched entities with it.
    """

    checkpoint: dict[str, Any]

    def save_scan(self, scanned_to: int, events: int, touched: dict[str, dict[int, Any]]) -> None: ...

    def touched(self, kind: str) -> dict[int, Any]: ...

    def done_ids(self, kind: str) -> set[str]: ...

    def save_records(self, kind: str, records: list[dict[str, Any]]) -> None: ...


ProgressCallback = Callable[[SyncStats, str], None]


class SyncEngine:
    def __init__(self, rpc: JsonRpc, deployment: Deployment, kinds: dict[str, EntityKind], log_chunk_blocks: int) -> None:
        self.rpc = rpc
        self.deployment = deployment
        self.kinds = kinds
        self.log_chunk_blocks = log_chunk_blocks

    def head(self) -> int:
        return int(self.rpc.call("eth_blockNumber", []), 16)

    def check_chain(self) -> int:
        chain_id = int(self.rpc.call("eth_chainId", []), 16)
        expected = self.deployment.chain_id
        if expected is not None and int(expected) != chain_id:
            raise ChainsyncError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "CHAIN_MISMATCH",
                f"the node is on chain {chain_id} but the deployment file is for chain {expected}",
            )
        return chain_id

    def block_hash(self, number: int) -> str:
        block = self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            raise ChainsyncError(grpc.StatusCode.UNAVAILABLE, "BLOCK_NOT_FOUND", f"the node has no block {number}")
        return block["hash"]

    def scan_logs(self, rng: BlockRange, kind_names: list[str], stats: SyncStats, progress: ProgressCallback,
                  journal: SyncJournal) -> None:
        """Finds the entities the range's events name, chunk by chunk, saving each chunk."""
        by_address = {self.deployment.addresses[self.kinds[k].contract].lower(): self.kinds[k] for k in kind_names}
        scanned_to = int(journal.checkpoint.get("scannedTo", rng.from_block - 1))
        stats.events_found = int(journal.checkpoint.get("events", 0))
        stats.blocks_done = scanned_to - rng.from_block + 1
        if scanned_to >= rng.to_block:
            return
        for chunk in BlockRange(scanned_to + 1, rng.to_block).chunks(self.log_chunk_blocks):
            logs = self.rpc.call(
                "eth_getLogs",
                [{"fromBlock": hex(chunk.from_block), "toBlock": hex(chunk.to_block), "address": list(by_address)}],
            )
            touched: dict[str, dict[int, Any]] = {k: {} for k in kind_names}
            for log in logs:
                kind = by_address.get(log["address"].lower())
                topics = log["topics"]
                if kind is None or log.get("removed") or not topics or topics[0] not in kind.topics:
                    continue
                entity_id = int(topics[1], 16)
                stats.events_found += 1
                if topics[0] == kind.created_topic:
                    touched[kind.name][entity_id] = {
                        "blockNumber": str(int(log["blockNumber"], 16)),
                        "transactionHash": log["transactionHash"],
                        "logIndex": int(log["logIndex"], 16),
                    }
                else:
                    touched[kind.name].setdefault(entity_id, None)
            journal.save_scan(chunk.to_block, stats.events_found, touched)
            stats.blocks_done += chunk.size
            progress(stats, f"Scanned blocks {rng.from_block}..{chunk.to_block} of ..{rng.to_block}")

    def count(self, kind: EntityKind, block: int) -> int:
        return int(self.rpc.call(*kind.counter_call(self.deployment.addresses[kind.contract], block)), 16)

    def read_entities(self, kind: EntityKind, ids: list[int], created: dict[int, Any], block: int,
                      stats: SyncStats, progress: ProgressCallback, journal: SyncJournal) -> None:
        """Reads each entity's getter at ``block`` in batches, saving each page of records."""
        address = self.deployment.addresses[kind.contract]
        for start in range(0, len(ids), GETTER_PAGE):
            page = ids[start : start + GETTER_PAGE]
            answers = self.rpc.batch([kind.getter_call(address, i, block) for i in page])
            records = []
            for entity_id, raw in zip(page, answers):
                record = kind.decode_record(entity_id, raw)
                record["created"] = created.get(entity_id)
                records.append(record)
            journal.save_records(kind.name, records)
            stats.records_done += len(page)
            progress(stats, f"Read {stats.records_done} of {stats.records_total} records at block {block}")

    def run(self, rng: BlockRange, kind_names: list[str], full: bool, stats: SyncStats, progress: ProgressCallback,
            journal: SyncJournal) -> dict[str, int]:
        """Scans the range and saves every touched entity's state at rng.to_block. Returns counts per kind.

        Resumable: work the journal already holds is not done again.
        """
        stats.blocks_total = rng.size
        self.scan_logs(rng, kind_names, stats, progress, journal)
        plan: dict[str, tuple[list[int], dict[int, Any]]] = {}
        counts: dict[str, int] = {}
        for name in kind_names:
            created = journal.touched(name)
            ids = set(created)
            if full:
                ids |= set(range(1, self.count(self.kinds[name], rng.to_block) + 1))
            done = journal.done_ids(name)
            counts[name] = len(ids)
            stats.records_done += len(done)
            plan[name] = (sorted(i for i in ids if str(i) not in done), created)
        stats.records_total = sum(counts.values())
        progress(stats, f"Reading {stats.records_total} records at block {rng.to_block}")
        for name in kind_names:
            ids, created = plan[name]
            self.read_entities(self.kinds[name], ids, created, rng.to_block, stats, progress, journal)
        return counts
