"""Schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order by one runner.

Each file is one schema version (its number); the ``schema_version`` table
records the versions applied. A connector applies the missing ones when it
opens, in one transaction under its migration lock, so servers opening a
store at once migrate it once. Both dialects number their versions alike. A
new migration is a new file; never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.jobs.store.connector import Connector, Transaction

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    script: str


def migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations, in version order (1, 2, 3, ... without gaps)."""
    found = []
    for path in sorted((MIGRATIONS_DIR / dialect).glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations/{dialect}: versions {versions} are not 1, 2, 3, ...")
    return found


def apply_migrations(connector: Connector) -> list[int]:
    """Applies the migrations the store's ``schema_version`` lacks; returns the versions applied."""
    known = migrations(connector.dialect)

    def apply(tx: Transaction) -> list[int]:
        tx.run("create_schema_version")
        current = tx.one("schema_version")["version"]
        applied = []
        for migration in known:
            if migration.version > current:
                tx.script(migration.script)
                tx.run("record_schema_version", version=migration.version)
                applied.append(migration.version)
        return applied

    return connector.migrate(apply)
