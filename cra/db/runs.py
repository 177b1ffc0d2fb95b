"""`harness_runs`: closing the runs a crash left `running`.

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
