"""Event-less changes: entities changed by calls that emit no event (contracts.md "Silent changes").

Some mutators change an entity without an event. Every successful call to an
id-taking mutator of the contracts inside a chunk names its entity as touched,
found by one of the strategies of ``CHAINSYNC_SILENT_CHANGES``:

- ``trace``: ``trace_filter`` to the contracts (internal calls too), split into
  the ranges the node accepts;
- ``blocks``: every block's transactions (direct calls only; works on any node);
- ``auto``: traces where the node serves them, else blocks;
- ``off``: none (events only).

A call counts only when its transaction's receipt says it succeeded.
"""

from __future__ import annotations

import logging
from typing import Any

from server.engine.contracts import EntityKind
from server.engine.journal import Touch
from server.errors import ChainsyncError
from server.metrics import ServerMetrics
from server.transport.provider_limits import RpcError, range_limit
from server.transport.rpc import JsonRpc

log = logging.getLogger("chainsync.sync")

STRATEGIES = ("auto", "trace", "blocks", "off")
BLOCKS_PER_BATCH = 100  # blocks fetched per JSON-RPC batch when reading transactions


class SilentChanges:
    """Finds the touches of successful mutator calls in a block range, by the configured strategy."""

    def __init__(self, rpc: JsonRpc, strategy: str, trace_blocks: int, metrics: ServerMetrics) -> None:
        self.rpc = rpc
        self.strategy = strategy
        self.metrics = metrics
        self._trace_size = trace_blocks  # trace_filter range, shrunk to what the node accepts

    def touches(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Touch]:
        """Entities changed by successful calls to id-taking mutators in start..stop (events or not)."""
        if self.strategy == "off":
            return []
        if self.strategy in ("auto", "trace"):
            try:
                return self._from_traces(start, stop, by_address)
            except RpcError as err:
                if self.strategy == "trace":
                    raise ChainsyncError(
                        "TRACE_UNSUPPORTED",
                        f"the node does not serve trace_filter ({err.message}); use CHAINSYNC_SILENT_CHANGES=blocks",
                    ) from err
                self.strategy = "blocks"  # auto: this node has no traces; scan blocks from now on
        return self._from_blocks(start, stop, by_address)

    def _traces(self, start: int, stop: int, addresses: list[str]) -> list[dict[str, Any]]:
        """trace_filter over start..stop, split into the ranges the node accepts."""
        traces: list[dict[str, Any]] = []
        while start <= stop:
            end = min(stop, start + self._trace_size - 1)
            flt = {"fromBlock": hex(start), "toBlock": hex(end), "toAddress": addresses}
            try:
                traces += self.rpc.call("trace_filter", [flt]) or []
            except RpcError as err:
                limit = range_limit(err)
                asked = end - start + 1
                if limit is None or asked == 1:
                    raise
                self._trace_size = min(asked // 2, limit.suggested_blocks or asked) or 1
                log.info(
                    "trace_filter range refused; splitting",
                    extra={"blocks": f"{start}..{end}", "next_size": self._trace_size},
                )
                self.metrics.range_split("trace_filter")
                continue
            start = end + 1
        return traces

    def _from_traces(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Touch]:
        candidates: dict[str, list[Touch]] = {}
        for trace in self._traces(start, stop, list(by_address)):
            action = trace.get("action", {})
            if trace.get("type") != "call" or trace.get("error") or action.get("callType") not in ("call", None):
                continue
            touch = mutator_touch(action.get("to"), action.get("input"), trace["blockNumber"], by_address)
            if touch:
                candidates.setdefault(trace["transactionHash"], []).append(touch)
        return self._successful(candidates)

    def _from_blocks(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Touch]:
        candidates: dict[str, list[Touch]] = {}
        for first in range(start, stop + 1, BLOCKS_PER_BATCH):
            numbers = range(first, min(stop, first + BLOCKS_PER_BATCH - 1) + 1)
            blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
            for number, block in zip(numbers, blocks):
                if block is None:
                    raise ChainsyncError("BLOCK_NOT_FOUND", f"the node has no block {number}")
                for tx in block["transactions"]:
                    touch = mutator_touch(tx.get("to"), tx.get("input"), number, by_address)
                    if touch:
                        candidates.setdefault(tx["hash"], []).append(touch)
        return self._successful(candidates)

    def _successful(self, candidates: dict[str, list[Touch]]) -> list[Touch]:
        """The touches of the transactions that succeeded (a reverted call changed nothing)."""
        if not candidates:
            return []
        hashes = list(candidates)
        receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        return [t for h, r in zip(hashes, receipts) if r and r.get("status") == "0x1" for t in candidates[h]]


def mutator_touch(to: str | None, data: str | None, block: int, by_address: dict[str, EntityKind]) -> Touch | None:
    """The entity a call names, when it calls an id-taking mutator (the id is the first argument)."""
    kind = by_address.get((to or "").lower())
    if kind is None or not data or len(data) < 74 or data[:10] not in kind.mutator_selectors:
        return None
    return Touch(kind.name, int(data[10:74], 16), block)
