"""The IPFS content cache (table ``ipfs_content``): verified content by CID, shared by every job and replica.

Content under a CID never changes, so an entry is never updated nor expired;
only content that was fetched and verified is kept (server/jobs/ipfs.py).
"""

from __future__ import annotations

import json
import time

from server.jobs.store.connector import Connector, Transaction


class ContentCache:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def get(self, cids: list[str]) -> dict[str, str]:
        """CID -> content of those CIDs the cache holds."""
        if not cids:
            return {}
        rows = self.connector.read(lambda tx: tx.all("cached_contents", cids=json.dumps(list(cids))))
        return {row["cid"]: row["content"] for row in rows}

    def save(self, contents: dict[str, str]) -> None:
        """Keeps verified content by CID (a CID already cached keeps its content)."""
        now = time.time()

        def insert(tx: Transaction) -> None:
            tx.many(
                "cache_content",
                [{"cid": cid, "content": content, "fetched_at": now} for cid, content in contents.items()],
            )

        self.connector.write(insert)
