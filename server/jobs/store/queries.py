"""The store's SQL by name: ``sql/queries.sql`` (both dialects) and ``sql/<dialect>.sql`` (where they differ).

The files are laid out as procrastinate's queries.sql: each query is a
``-- query_name --`` line, comment lines saying what it does, then one
statement ending with ``;``. Parameters are named (``:job_id``). A dialect's
file holds only the queries that differ, or exist only there: a name in both
files is an error, caught when the connector's module is imported.
"""

from __future__ import annotations

import re
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_HEADER = re.compile(r"^-- ([a-z0-9_]+) --\n(?:--.*\n)*", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Name -> statement (without its ``;``) of every query in a queries file; what comes before the first
    header (the file's own comments) is skipped."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        statement = body.strip()
        if not statement.endswith(";"):
            raise ValueError(f"query {name}: its statement does not end with ';'")
        if name in queries:
            raise ValueError(f"query {name} is defined twice")
        queries[name] = statement[:-1].rstrip()
    return queries


def load_queries(dialect: str) -> dict[str, str]:
    """The shared queries and the dialect's own ones (``dialect``: sqlite or postgres)."""
    shared = parse_queries((SQL_DIR / "queries.sql").read_text(encoding="utf-8"))
    own = parse_queries((SQL_DIR / f"{dialect}.sql").read_text(encoding="utf-8"))
    if both := sorted(shared.keys() & own.keys()):
        raise ValueError(f"sql/{dialect}.sql redefines shared queries: {', '.join(both)}")
    return {**shared, **own}
