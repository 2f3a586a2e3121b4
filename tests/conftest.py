"""Shared fixtures. The devnet is built once under .devnet/ and reused across sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from devnet.command import RunningDevnet, open_devnet

REPO = Path(__file__).resolve().parent.parent
DEVNET_DIR = REPO / ".devnet"


@pytest.fixture(scope="session")
def devnet() -> Iterator[RunningDevnet]:
    """anvil on a free loopback port with the seeded "demo" chain (built once, then loaded).

    Yields a RunningDevnet: .url, .deployment, .deployment_path, .expected.
    Transactions a test sends stay in this session only.
    """
    with open_devnet(DEVNET_DIR, "demo") as running:
        yield running


pytest_plugins = ["tests.stack"]  # the `stack` fixture: a gRPC server and a REST bridge on the devnet
