"""`retrievals`: what the retriever returned for each task's query, and which method (and
ranker version) served it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


def record_retrieval(
    conn: sqlite3.Connection,
    task_id: str,
    run_id: int | None,
    *,
    method: str,
    query: str,
    k: int,
    results: str,
    now: str,
    adapter: str | None = None,
    adapter_version: int | None = None,
    files: str | None = None,
) -> None:
    """Write one retrieval (its `results` and ranked `files` as JSON); the caller holds
    the transaction. `adapter` and `adapter_version` name the ranker that served it."""
    conn.execute(
        "INSERT INTO retrievals (task_id, run_id, method, query, k, results, created_at, "
        "adapter, adapter_version, files) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (task_id, run_id, method, query, k, results, now, adapter, adapter_version, files),
    )


@dataclass(frozen=True)
class ServedRetrieval:
    """A retrieval a ranker version served, with what its task is scored against."""

    id: int
    task_id: str
    repo: str
    parent_sha: str | None
    files: str
    """JSON list of the ranked files ({path, score, encoder, bm25}), best first."""
    gold_files: str
    """JSON list of the task's gold files ({path, old_path})."""
    created_at: str


def served_by(
    conn: sqlite3.Connection, adapter: str, version: int, since: str = ""
) -> list[ServedRetrieval]:
    """The retrievals `adapter@vN` served at or after `since`, oldest first, each with
    its task's repository, parent commit and gold files."""
    rows = conn.execute(
        "SELECT r.id, r.task_id, p.name, c.parent_sha, r.files, t.gold_files, r.created_at "
        "FROM retrievals r JOIN tasks t ON t.task_id = r.task_id "
        "JOIN commits c ON c.id = t.commit_id JOIN repos p ON p.id = t.repo_id "
        "WHERE r.adapter = ? AND r.adapter_version = ? AND r.created_at >= ? "
        "AND r.files IS NOT NULL ORDER BY r.created_at, r.id",
        (adapter, version, since),
    ).fetchall()
    return [ServedRetrieval(*row) for row in rows]
