"""`harness_runs`: starting and closing runs, and closing the runs a crash left `running`.

A run row says `running` while its process works. A process killed outright (`kill -9`,
a power cut) never gets to close its row. The workspace's writer lock (:mod:`cra.lock`)
makes the fix exact: a process that holds the lock is the only writer, so any row still
`running` belongs to a process that is gone.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from cra.db.connection import transaction

INTERRUPTED_ERROR = "interrupted: its process ended without closing the run"


@dataclass(frozen=True)
class StaleRun:
    """A run that was left `running` and is now marked `interrupted`."""

    id: int
    kind: str
    started_at: str


def interrupt_stale_runs(conn: sqlite3.Connection) -> tuple[StaleRun, ...]:
    """Mark every `running` run `interrupted`; the caller holds the writer lock."""
    with transaction(conn):
        rows = conn.execute(
            "SELECT id, kind, started_at FROM harness_runs WHERE status = 'running' ORDER BY id"
        ).fetchall()
        conn.execute(
            "UPDATE harness_runs SET status = 'interrupted', finished_at = ?, "
            "error = coalesce(error, ?) WHERE status = 'running'",
            (datetime.now(UTC).isoformat(), INTERRUPTED_ERROR),
        )
    return tuple(StaleRun(int(r[0]), str(r[1]), str(r[2])) for r in rows)


def start_run(
    conn: sqlite3.Connection,
    repo_id: int,
    kind: str,
    params: str,
    now: str,
    *,
    planner: str | None = None,
) -> int:
    """Record a `running` run of `kind` with its JSON `params`; return its id."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO harness_runs (repo_id, kind, planner, params, started_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (repo_id, kind, planner, params, now),
        )
    return _rowid(cursor)


def finish_run(
    conn: sqlite3.Connection, run_id: int, status: str, error: str | None, now: str
) -> None:
    """Close the run with its final `status` (and the error that ended it)."""
    with transaction(conn):
        conn.execute(
            "UPDATE harness_runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
            (status, now, error, run_id),
        )


def record_task_run(
    conn: sqlite3.Connection, task_id: str, kind: str, params: str, started: str, finished: str
) -> int:
    """Record a finished run of `kind` on the task's repository; return its id. The
    caller holds the transaction."""
    cursor = conn.execute(
        "INSERT INTO harness_runs (repo_id, kind, params, status, started_at, "
        "finished_at) VALUES ((SELECT repo_id FROM tasks WHERE task_id = ?), "
        "?, ?, 'finished', ?, ?)",
        (task_id, kind, params, started, finished),
    )
    return _rowid(cursor)


def _rowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:
        raise sqlite3.IntegrityError("harness_runs: the insert returned no row id")
    return cursor.lastrowid
