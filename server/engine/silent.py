"""Event-less changes: entities changed by calls that emit no event (contracts.md "Silent changes").

Some mutators change an entity without an event. Every successful call to an
id-taking mutator of the contracts inside a chunk names its entity as touched,
found by one of the strategies of ``CHAINSYNC_SILENT_CHANGES``:

- ``trace``: ``trace_filter`` to the contracts (internal calls too), split into
  the ranges the node accepts;
- ``blocks``: every block's transactions (direct calls only; works on any node);
- ``auto``: traces where the node serves them, else blocks;
- ``off``: none (events only).

A call counts only when its transaction succeeded: a transaction's own call
traced without an error did; for an internal call (or a block's transaction)
the receipt says. Under
``auto``, whether an endpoint serves ``trace_filter`` is asked once per
endpoint (``TraceSupport``: the server probes its endpoints when it starts and
every hour, and again after traces failed) and the answer is logged once; a
job reads the answer and never sends a probe bound to fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from server.engine.contracts import EntityKind
from server.engine.journal import Touch
from server.errors import ChainsyncError
from server.logs import redact
from server.metrics import NO_METRICS, ServerMetrics
from server.retry import Transient
from server.transport.endpoints import SHARED, Endpoints
from server.transport.provider_limits import RpcError, range_limit
from server.transport.rpc import JsonRpc

log = logging.getLogger("chainsync.sync")


class TraceAction(msgspec.Struct, rename="camel", gc=False):
    to: str | None = None
    input: str | None = None  # a create's action has "init" instead
    call_type: str | None = None


class Trace(msgspec.Struct, rename="camel", gc=False):
    """What _from_traces reads of a trace_filter entry (Parity's format), decoded by the transport as
    server/engine/scan.py's logs are: the rest (the call's output, gas, value) is parsed, never kept. Only the
    block number is required: the other fields may be absent, as they may be in Parity's format (a block
    reward's trace has no transaction, a create's action no callType), and an absent one is treated as before."""

    block_number: int
    type: str | None = None
    action: TraceAction | None = None
    transaction_hash: str | None = None
    trace_address: list[int] | None = None  # [] for the transaction's own call
    error: Any = None


STRATEGIES = ("auto", "trace", "blocks", "off")
BLOCKS_PER_BATCH = 100  # blocks fetched per JSON-RPC batch when reading transactions
PROBE_AGAIN_S = 3600.0  # an endpoint's trace_filter answer is asked again after this long
PROBE_TIMEOUT_S = 5.0


class TraceSupport:
    """Which endpoints serve trace_filter: probed once per endpoint, kept for an hour, one per server."""

    def __init__(self, recheck_s: float = PROBE_AGAIN_S, endpoints: Endpoints = SHARED) -> None:
        self.recheck_s = recheck_s
        self.endpoints = endpoints
        self.ranges: dict[str, int] = {}  # url -> the largest trace_filter range the endpoint accepted after a refusal
        self._answers: dict[str, tuple[bool, float]] = {}  # url -> (serves traces, when asked)
        self._lock = threading.Lock()
        self._probing: dict[str, threading.Lock] = {}  # one probe of an endpoint at a time; others wait for it

    def answer(self, url: str) -> bool | None:
        """What the last probe of url said, None when it was never asked or the answer is old."""
        with self._lock:
            found = self._answers.get(url)
        return found[0] if found and time.monotonic() - found[1] < self.recheck_s else None

    def forget(self, url: str) -> None:
        """Traces failed where the probe said they work: ask again next time."""
        with self._lock:
            self._answers.pop(url, None)

    def _probing_lock(self, url: str) -> threading.Lock:
        with self._lock:
            return self._probing.setdefault(url, threading.Lock())

    def probe(self, url: str, metrics: ServerMetrics = NO_METRICS) -> bool | None:
        """Whether url serves traces: the answer known, else asked now (a probe in flight is waited for)."""
        with self._probing_lock(url):
            known = self.answer(url)
            return known if known is not None else self._ask(url, metrics)

    def probe_in_background(self, url: str, metrics: ServerMetrics = NO_METRICS) -> threading.Thread:
        """Starts asking url now (the server does, at start and every hour); a job that wants the answer
        meanwhile waits for it rather than asking too."""
        probing = self._probing_lock(url)
        probing.acquire()

        def ask() -> None:
            try:
                self._ask(url, metrics)
            finally:
                probing.release()

        thread = threading.Thread(target=ask, name="chainsync-trace-probe", daemon=True)
        thread.start()
        return thread

    def _ask(self, url: str, metrics: ServerMetrics) -> bool | None:
        rpc = JsonRpc(
            [url], timeout_s=PROBE_TIMEOUT_S, budget_s=PROBE_TIMEOUT_S, metrics=metrics, endpoints=self.endpoints
        )
        with rpc:
            try:
                rpc.call("trace_filter", [{"fromBlock": "0x0", "toBlock": "0x0", "toAddress": [ZERO_ADDRESS]}])
                serves, why = True, ""
            except RpcError as err:
                serves, why = False, err.message
            except (ChainsyncError, Transient):
                return None
        with self._lock:
            before = self._answers.get(url)
            self._answers[url] = (serves, time.monotonic())
        if before is None or before[0] != serves:  # said once per endpoint, and again only when it changes
            if serves:
                log.info("event-less changes: the endpoint serves trace_filter", extra={"endpoint": redact(url)})
            else:
                log.info(
                    "event-less changes: the endpoint does not serve trace_filter; reading blocks' transactions",
                    extra={"endpoint": redact(url), "error": why},
                )
        return serves


ZERO_ADDRESS = "0x" + "00" * 20


class SilentChanges:
    """Finds the touches of successful mutator calls in a block range, by the configured strategy."""

    def __init__(
        self, rpc: JsonRpc, strategy: str, trace_blocks: int, support: TraceSupport, metrics: ServerMetrics
    ) -> None:
        self.rpc = rpc
        self.strategy = strategy
        self.falls_back = strategy == "auto"  # traces failing: blocks instead (with `trace`: the job fails)
        self.support = support
        self.metrics = metrics
        # trace_filter range: what the endpoint accepted before (its refusals are remembered), else one chunk
        self._trace_size = support.ranges.get(rpc.urls[0], trace_blocks)

    def works(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Callable[[], list[Touch]]]:
        """The event-less changes of start..stop as pieces that can run at once: one per trace_filter range the
        node accepts, or per batch of blocks. (Decides ``auto`` first: a probe answered, or one now.)"""
        if self.strategy == "auto":
            self.strategy = "trace" if self._traces_served() else "blocks"
        if self.strategy == "off":
            return []
        size = self._trace_size if self.strategy == "trace" else BLOCKS_PER_BATCH
        pieces = [(first, min(stop, first + size - 1)) for first in range(start, stop + 1, size)]
        return [lambda a=a, b=b: self.touches(a, b, by_address) for a, b in pieces]

    def _traces_served(self) -> bool:
        """auto: whether the primary endpoint serves traces (asked now only when no probe has answered)."""
        url = self.rpc.urls[0]
        serves = self.support.answer(url)
        if serves is None:
            serves = bool(self.support.probe(url, self.metrics))
        return serves

    def touches(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Touch]:
        """Entities changed by successful calls to id-taking mutators in start..stop (events or not)."""
        if self.strategy == "auto":
            self.strategy = "trace" if self._traces_served() else "blocks"
        if self.strategy == "off":
            return []
        if self.strategy == "trace":
            try:
                return self._from_traces(start, stop, by_address)
            except RpcError as err:
                if not self.falls_back:
                    raise ChainsyncError(
                        "TRACE_UNSUPPORTED",
                        f"the node does not serve trace_filter ({err.message}); use CHAINSYNC_SILENT_CHANGES=blocks",
                    ) from err
                log.warning("trace_filter failed; reading blocks' transactions", extra={"error": err.message})
                self.support.forget(self.rpc.urls[0])
                self.strategy = "blocks"
        return self._from_blocks(start, stop, by_address)

    def _traces(self, start: int, stop: int, addresses: list[str]) -> list[Trace]:
        """trace_filter over start..stop, split into the ranges the node accepts."""
        traces: list[Trace] = []
        while start <= stop:
            end = min(stop, start + self._trace_size - 1)
            flt = {"fromBlock": hex(start), "toBlock": hex(end), "toAddress": addresses}
            try:
                traces += self.rpc.call("trace_filter", [flt], result_type=list[Trace] | None) or []
            except RpcError as err:
                limit = range_limit(err)
                asked = end - start + 1
                if limit is None or asked == 1:
                    raise
                stated = limit.suggested_blocks
                self._trace_size = (stated if stated and stated < asked else asked // 2) or 1
                self.support.ranges[self.rpc.urls[0]] = self._trace_size  # the next jobs plan with it
                log.info(
                    "trace_filter range refused; splitting",
                    extra={"blocks": f"{start}..{end}", "next_size": self._trace_size},
                )
                self.metrics.range_split("trace_filter")
                continue
            start = end + 1
        return traces

    def _from_traces(self, start: int, stop: int, by_address: dict[str, EntityKind]) -> list[Touch]:
        succeeded: list[Touch] = []
        candidates: dict[str, list[Touch]] = {}
        for trace in self._traces(start, stop, list(by_address)):
            action = trace.action
            if trace.type != "call" or trace.error or action is None or action.call_type not in ("call", None):
                continue
            touch = mutator_touch(action.to, action.input, trace.block_number, by_address)
            if touch is None:
                continue
            if trace.trace_address == []:
                # The transaction's own call, without an error: the transaction succeeded, no receipt needed.
                succeeded.append(touch)
            elif trace.transaction_hash is None:
                raise ChainsyncError(
                    "RPC_BAD_RESPONSE", "trace_filter answered an internal call without its transaction"
                )
            else:
                # An internal call: a caller further up may have reverted it; the receipt says.
                candidates.setdefault(trace.transaction_hash, []).append(touch)
        return succeeded + self._successful(candidates)

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
