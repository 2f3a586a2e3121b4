"""Request bodies of the JSON API, mirroring chainsync.v1.StartSyncRequest.

Strict: a float, a string or a boolean where an integer belongs is a 400 that
names the field, as is an unknown field (most often a typo).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

BlockNumber = Annotated[int, Field(ge=0, le=2**63 - 1)] | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,19}$")]


class StartSyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    blocksBack: Annotated[int, Field(ge=1, le=100000000)] | None = Field(
        None, description="Sync the last N blocks up to head - confirmations (default 1000)."
    )
    isFullSync: bool = Field(False, description="Sync from the earliest deployment block.")
    type: Literal["blockchain_sync", "proposals_sync", "petitions_sync", "reports_sync"] = "blockchain_sync"
    requestId: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = Field(
        None, description="Idempotency key: the same key within 24 h returns the first job."
    )
    fromBlock: BlockNumber | None = Field(None, description="Explicit range start (inclusive), instead of blocksBack.")
    toBlock: BlockNumber | None = Field(None, description="Explicit range end (inclusive).")
    incremental: bool = Field(False, description="Continue from the end of the last completed sync of this type.")
    confirmations: Annotated[int, Field(ge=0, le=10000)] | None = None
    timeoutSeconds: Annotated[int, Field(ge=1, le=86400)] | None = None
