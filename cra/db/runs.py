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

RUN_KINDS = ("plan", "validate", "grade")
"""The kinds of run the harness records; each kind numbers its runs from 1."""

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
    """Record a `running` run of `kind` (one of :data:`RUN_KINDS`) with its JSON
    `params`; return its id."""
    _check_kind(kind)
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
    _check_kind(kind)
    cursor = conn.execute(
        "INSERT INTO harness_runs (repo_id, kind, params, status, started_at, "
        "finished_at) VALUES ((SELECT repo_id FROM tasks WHERE task_id = ?), "
        "?, ?, 'finished', ?, ?)",
        (task_id, kind, params, started, finished),
    )
    return _rowid(cursor)


@dataclass(frozen=True)
class RunRecord:
    """One `harness_runs` row, numbered among the runs of its kind (`validate #3`)."""

    id: int
    kind: str
    number: int
    repo: str | None
    planner: str | None
    status: str
    started_at: str
    finished_at: str | None
    error: str | None

    @property
    def label(self) -> str:
        """The run as users name it: its kind and its number among that kind's runs."""
        return f"{self.kind} #{self.number}"


_RUNS_SELECT = (
    "SELECT r.id, r.kind, (SELECT count(*) FROM harness_runs o WHERE o.kind = r.kind "
    "AND o.id <= r.id) AS number, repos.name, r.planner, r.status, r.started_at, "
    "r.finished_at, r.error FROM harness_runs r LEFT JOIN repos ON repos.id = r.repo_id"
)


def _record(row: sqlite3.Row | tuple[object, ...]) -> RunRecord:
    values = tuple(row)
    return RunRecord(
        id=int(str(values[0])),
        kind=str(values[1]),
        number=int(str(values[2])),
        repo=None if values[3] is None else str(values[3]),
        planner=None if values[4] is None else str(values[4]),
        status=str(values[5]),
        started_at=str(values[6]),
        finished_at=None if values[7] is None else str(values[7]),
        error=None if values[8] is None else str(values[8]),
    )


def list_runs(conn: sqlite3.Connection, kind: str | None = None) -> tuple[RunRecord, ...]:
    """Every run (or every run of `kind`), oldest first, each numbered within its kind."""
    where, args = ("WHERE r.kind = ?", (kind,)) if kind is not None else ("", ())
    rows = conn.execute(f"{_RUNS_SELECT} {where} ORDER BY r.id", args).fetchall()
    return tuple(_record(r) for r in rows)


def get_run(conn: sqlite3.Connection, run_id: int) -> RunRecord | None:
    """The run with id `run_id`, numbered within its kind; None when there is none."""
    row = conn.execute(f"{_RUNS_SELECT} WHERE r.id = ?", (run_id,)).fetchone()
    return None if row is None else _record(row)


def current_run(conn: sqlite3.Connection) -> RunRecord | None:
    """The newest run still `running`, else the newest run; None when there is none."""
    row = conn.execute(
        "SELECT id FROM harness_runs ORDER BY status = 'running' DESC, id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else get_run(conn, int(row[0]))


def run_label(conn: sqlite3.Connection, run_id: int) -> str:
    """How users name the run: its kind and number among that kind (`validate #3`)."""
    found = get_run(conn, run_id)
    return f"run {run_id}" if found is None else found.label


def _check_kind(kind: str) -> None:
    if kind not in RUN_KINDS:
        raise ValueError(f"run kind {kind!r} is not one of {', '.join(RUN_KINDS)}")


def _rowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:
        raise sqlite3.IntegrityError("harness_runs: the insert returned no row id")
    return cursor.lastrowid
