"""A small JSON-RPC client for the devnet tools.

Owns: one httpx connection to a node, single calls and JSON-RPC array
batches, and turning an error answer into an exception. No retries: the
devnet is local, and a failure should stop the build loudly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import httpx
import orjson


class RpcError(Exception):
    """The node answered a call with an error object."""

    def __init__(self, method: str, error: dict[str, Any]):
        self.method = method
        self.code = error.get("code")
        self.error_message = error.get("message", "")
        self.data = error.get("data")
        super().__init__(f"{method} failed: {self.code} {self.error_message}")


@dataclass
class Rpc:
    """JSON-RPC over one HTTP connection. Use as a context manager or call close()."""

    url: str
    timeout_s: float = 120.0
    _client: httpx.Client = field(init=False, repr=False)
    _ids: Any = field(init=False, repr=False, default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._client = httpx.Client(timeout=self.timeout_s)

    def __enter__(self) -> Rpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _post(self, body: Any) -> Any:
        response = self._client.post(self.url, content=orjson.dumps(body), headers={"content-type": "application/json"})
        response.raise_for_status()
        return orjson.loads(response.content)

    def call(self, method: str, *params: Any) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        if "error" in answer:
            raise RpcError(method, answer["error"])
        return answer["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send the calls as one JSON-RPC array; results come back in the calls' order.

        Raises RpcError for the first call that failed.
        """
        if not calls:
            return []
        first = next(self._ids)
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(calls)
        ]
        self._ids = itertools.count(first + len(calls))
        answers = {a["id"]: a for a in self._post(body)}
        results = []
        for i, (method, _) in enumerate(calls):
            answer = answers[first + i]
            if "error" in answer:
                raise RpcError(method, answer["error"])
            results.append(answer["result"])
        return results
