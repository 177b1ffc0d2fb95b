"""The databases: `raw.db` (what happened) and `curated.db` (what the agent retrieves)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cra.db.connection import (
    DAMAGED_HINT,
    check_integrity,
    connect,
    refuse_emptied,
    transaction,
)
from cra.db.curated_schema import CURATED_MIGRATIONS
from cra.db.migrations import Migration, migrate, schema_version
from cra.db.raw_schema import RAW_MIGRATIONS
from cra.errors import DatabaseError

__all__ = [
    "CURATED_MIGRATIONS",
    "RAW_MIGRATIONS",
    "check_integrity",
    "connect",
    "open_curated",
    "open_db",
    "open_raw",
    "refuse_emptied",
    "schema_version",
    "transaction",
]


def open_db(
    path: Path,
    migrations: tuple[Migration, ...],
    *,
    busy_timeout_ms: int,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path` and bring its schema up to date."""
    conn = connect(path, busy_timeout_ms=busy_timeout_ms, check_same_thread=check_same_thread)
    try:
        migrate(conn, migrations, path=Path(path))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"is damaged: {exc}", path=Path(path), hint=DAMAGED_HINT) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_raw(
    path: Path, *, busy_timeout_ms: int = 10_000, expect_data: bool = False
) -> sqlite3.Connection:
    """Open `raw.db` at `path`, migrated to the current schema.

    With `expect_data` (the workspace has packages, so the database once held them), an
    existing empty file is refused rather than turned into a new database.
    """
    if expect_data:
        refuse_emptied(path)
    return open_db(path, RAW_MIGRATIONS, busy_timeout_ms=busy_timeout_ms)


def open_curated(path: Path, *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """Open `curated.db` at `path`, migrated to the current schema."""
    return open_db(path, CURATED_MIGRATIONS, busy_timeout_ms=busy_timeout_ms)
