"""`retrievals`: what the retriever returned for each task's query."""

from __future__ import annotations

import sqlite3


def record_retrieval(
    conn: sqlite3.Connection,
    task_id: str,
    run_id: int,
    *,
    method: str,
    query: str,
    k: int,
    results: str,
    now: str,
) -> None:
    """Write one retrieval (its `results` as JSON); the caller holds the transaction."""
    conn.execute(
        "INSERT INTO retrievals (task_id, run_id, method, query, k, results, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (task_id, run_id, method, query, k, results, now),
    )
