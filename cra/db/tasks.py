"""`tasks`: one task per qualifying commit, with its gold once the harness computed it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cra.db.commits import Commit, commit_of
from cra.db.connection import transaction


@dataclass(frozen=True)
class TaskCommit:
    """A task's repository and the commit it was made from."""

    repo: str
    commit: Commit


def task_id_for(repo: str, sha: str) -> str:
    """The task id of a commit: `REPO@SHA12`."""
    return f"{repo}@{sha[:12]}"


def ensure_task(conn: sqlite3.Connection, repo_id: int, repo: str, commit: Commit, now: str) -> str:
    """Record the commit's task unless it is recorded already; return its id."""
    task_id = task_id_for(repo, commit.sha)
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO tasks (task_id, repo_id, commit_id, task_text, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (task_id, repo_id, commit.id, commit.task_text, now),
        )
    return task_id


def set_gold(conn: sqlite3.Connection, task_id: str, gold_files: str, gold_symbols: str) -> None:
    """Store the task's gold files and symbols (JSON); the caller holds the transaction."""
    conn.execute(
        "UPDATE tasks SET gold_files = ?, gold_symbols = ? WHERE task_id = ?",
        (gold_files, gold_symbols, task_id),
    )


def task_commit(conn: sqlite3.Connection, task_id: str) -> TaskCommit | None:
    """The task's repository and commit, or None when there is no such task."""
    row = conn.execute(
        "SELECT r.name, c.id, c.sha, c.parent_sha, c.authored_at, c.task_text, "
        "c.files_source, c.files_tests FROM tasks t JOIN commits c ON c.id = t.commit_id "
        "JOIN repos r ON r.id = t.repo_id WHERE t.task_id = ?",
        (task_id,),
    ).fetchone()
    return None if row is None else TaskCommit(row["name"], commit_of(row))


@dataclass(frozen=True)
class TaskGold:
    """A task's gold (JSON texts as recorded), its commit's parent and its repository."""

    gold_files: str
    gold_symbols: str
    parent_sha: str | None
    repo: str


def task_gold(conn: sqlite3.Connection, task_id: str) -> TaskGold | None:
    """The task's gold, parent commit and repository, or None when there is no such task."""
    row = conn.execute(
        "SELECT t.gold_files, t.gold_symbols, c.parent_sha, r.name FROM tasks t "
        "JOIN commits c ON c.id = t.commit_id JOIN repos r ON r.id = t.repo_id "
        "WHERE t.task_id = ?",
        (task_id,),
    ).fetchone()
    return None if row is None else TaskGold(row[0], row[1], row[2], row[3])


@dataclass(frozen=True)
class TaskListing:
    """A task with its repository and commit as recorded (gold and the commit's changed
    files as JSON texts; the gold is `[]` until a planning run computed it)."""

    task_id: str
    repo: str
    sha: str
    parent_sha: str | None
    authored_at: str
    task_text: str
    gold_files: str
    gold_symbols: str
    files_source: str
    files_tests: str


def task_listings(
    conn: sqlite3.Connection,
    *,
    repo: str | None = None,
    task_id: str | None = None,
    since_ts: int | None = None,
) -> list[TaskListing]:
    """The tasks (of `repo`, or the one `task_id`, authored at or after `since_ts`),
    oldest commit first."""
    rows = conn.execute(
        "SELECT t.task_id, r.name, c.sha, c.parent_sha, c.authored_at, t.task_text, "
        "t.gold_files, t.gold_symbols, c.files_source, c.files_tests FROM tasks t "
        "JOIN commits c ON c.id = t.commit_id JOIN repos r ON r.id = t.repo_id "
        "WHERE (:repo IS NULL OR r.name = :repo) "
        "AND (:task IS NULL OR t.task_id = :task) "
        "AND (:since IS NULL OR c.authored_ts >= :since) ORDER BY c.authored_ts, t.task_id",
        {"repo": repo, "task": task_id, "since": since_ts},
    ).fetchall()
    return [TaskListing(*row) for row in rows]


def task_ids_like(conn: sqlite3.Connection, prefix: str, limit: int = 5) -> list[str]:
    """Up to `limit` task ids that start with `prefix`, sorted."""
    rows = conn.execute(
        "SELECT task_id FROM tasks WHERE substr(task_id, 1, length(?)) = ? "
        "ORDER BY task_id LIMIT ?",
        (prefix, prefix, limit),
    )
    return [row[0] for row in rows]
