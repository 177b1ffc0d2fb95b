"""Numbered, transactional schema migrations, applied every time a database is opened.

The schema version is SQLite's `user_version`. Each migration runs in the same
transaction as the version bump, so a crash leaves the database at the previous
version, never half-migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cra.db.connection import transaction
from cra.errors import SchemaTooNew

Step = str | Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    """Schema version `version`: what it is for, and the SQL (or callables) that make it."""

    version: int
    name: str
    steps: tuple[Step, ...]


def split_sql(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies stay whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")
    return statements


def sql(script: str) -> tuple[str, ...]:
    """Steps for a migration, one per statement of `script`."""
    return tuple(split_sql(script))


def check_sequence(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions run 1, 2, 3, … without gaps."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}, expected {expected}"
            )


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new database)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration],
    *,
    path: Path,
    target: int | None = None,
) -> list[int]:
    """Apply the migrations the database lacks, up to `target` (default: all); return them."""
    check_sequence(migrations)
    known = len(migrations)
    goal = known if target is None else target
    if not 0 <= goal <= known:
        raise ValueError(f"target {target!r} is outside 0..{known}")
    current = schema_version(conn)
    if current > known:
        raise SchemaTooNew(path=path, found=current, known=known)
    applied: list[int] = []
    while current < goal:
        with transaction(conn):
            # Re-read inside the write lock: another process may have migrated meanwhile.
            current = schema_version(conn)
            if current > known:
                raise SchemaTooNew(path=path, found=current, known=known)
            if current >= goal:
                break
            migration = migrations[current]
            conn.execute(BOOKKEEPING)
            for step in migration.steps:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {migration.version}")
            applied.append(migration.version)
            current = migration.version
    return applied


BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
"""
