"""Online backup of a SQLite job store (``chainsync backup``).

Copying ``jobs.sqlite3`` with ``cp`` while a server runs can tear it: in WAL
mode the newest writes live in ``jobs.sqlite3-wal`` until a checkpoint. The
SQLite backup API copies a consistent snapshot page by page while the server
keeps writing; a few pages at a time, so the server's writers wait at most one
step. A PostgreSQL store is backed up with PostgreSQL's own tools
(``pg_dump``), which know about its other clients.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PAGES_PER_STEP = 256  # 1 MiB at SQLite's default 4 KiB page


@dataclass
class BackupReport:
    path: Path
    size_bytes: int
    jobs: int
    schema_version: int


class BackupError(Exception):
    """The backup could not be made; the message says why and what to do."""


def backup_sqlite(
    source: str | Path,
    destination: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """Copies the SQLite job store at ``source`` to ``destination`` (a new file), while servers keep using it.

    ``progress(copied_pages, total_pages)`` is called after each step.
    """
    source, destination = Path(source), Path(destination)
    if str(source).startswith(("postgresql:", "postgres:")):
        raise BackupError("CHAINSYNC_DB is a PostgreSQL URL: back it up with pg_dump (README, 'For operators')")
    if not source.is_file():
        raise BackupError(f"CHAINSYNC_DB: no job store at {source}")
    if destination.exists():
        raise BackupError(f"destination: {destination} exists; give a new file name")
    if not destination.parent.is_dir():
        raise BackupError(f"destination: folder {destination.parent} does not exist")

    reader = sqlite3.connect(source, timeout=30)  # reads only; not mode=ro, which a WAL file without -shm refuses
    partial = destination.with_name(destination.name + ".partial")
    writer = sqlite3.connect(partial)
    try:

        def step(status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        reader.backup(writer, pages=PAGES_PER_STEP, progress=step)
        check = writer.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy failed SQLite's integrity check ({check}); the source may be damaged")
        jobs = writer.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        version = writer.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
    except sqlite3.DatabaseError as exc:
        writer.close()
        partial.unlink(missing_ok=True)
        raise BackupError(f"CHAINSYNC_DB: {source} is not a chainsync job store ({exc})") from None
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        reader.close()
    writer.close()
    partial.rename(destination)  # a file at destination is always a whole backup
    return BackupReport(destination, destination.stat().st_size, jobs, version)
