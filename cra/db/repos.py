"""`repos`: the repositories the harness knows, one row per name."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from cra.db.connection import transaction


def upsert_repo(
    conn: sqlite3.Connection,
    name: str,
    *,
    source_url: str | None,
    head_sha: str | None,
    domain: str | None,
    manifest_sha256: str | None,
) -> int:
    """Insert or update the row for `name` in one transaction; return its id. A field
    given as None keeps its stored value."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO repos (name, source_url, head_sha, domain, manifest_sha256, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET "
            "source_url = coalesce(excluded.source_url, source_url), "
            "head_sha = coalesce(excluded.head_sha, head_sha), "
            "domain = coalesce(excluded.domain, domain), "
            "manifest_sha256 = coalesce(excluded.manifest_sha256, manifest_sha256)",
            (name, source_url, head_sha, domain, manifest_sha256, datetime.now(UTC).isoformat()),
        )
        found = repo_id(conn, name)
    if found is None:
        raise sqlite3.IntegrityError(f"repos row for {name!r} vanished after its upsert")
    return found


def repo_id(conn: sqlite3.Connection, name: str) -> int | None:
    """The id of the repository called `name`, or None when it is not recorded."""
    row = conn.execute("SELECT id FROM repos WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def repo_names(conn: sqlite3.Connection) -> list[str]:
    """The names of every recorded repository, sorted."""
    return [row[0] for row in conn.execute("SELECT name FROM repos ORDER BY name")]


def delete_repo(conn: sqlite3.Connection, name: str) -> bool:
    """Delete the repository called `name` and, through the schema's cascades, its
    commits, tasks, runs and every record of its tasks (model calls keep their row, their
    task cleared), in one transaction; return whether there was one."""
    with transaction(conn):
        cursor = conn.execute("DELETE FROM repos WHERE name = ?", (name,))
    return cursor.rowcount > 0
