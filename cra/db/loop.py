"""The loop tables: `loop_runs`, `loop_cycles`, `loop_steps` and `loop_events`.

Every statement on them is here. Events are an append-only journal: each row holds the
sha256 of the event before it (`prev_sha256`, '' for the first) and its own `sha256`,
computed over that and the row's content, so :func:`verify_journal` can recompute the
chain and name the first link that does not hold.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cra.db.connection import transaction
from cra.fsutil import now_iso

JsonMap = Mapping[str, Any]


def _dumps(value: JsonMap) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class LoopRun:
    """One loop run: its limits, where it stands and, once ended, why."""

    id: int
    status: str
    limits: JsonMap
    cycle: int
    runtime_s: float
    repo: str | None
    stop_requested: str | None
    stop_reason: str | None
    exit_code: int | None
    started_at: str
    ended_at: str | None


@dataclass(frozen=True)
class LoopCycle:
    """One cycle of a run: its repository, outcome, tokens, promotions and summary."""

    run_id: int
    number: int
    repo: str | None
    status: str
    runtime_s: float
    tokens: int
    promoted: int
    summary: JsonMap
    started_at: str
    ended_at: str | None


@dataclass(frozen=True)
class LoopStep:
    """One step of a cycle: when it ran, how it ended, what it counted and produced."""

    run_id: int
    cycle: int
    position: int
    step: str
    status: str
    reason: str | None
    counts: JsonMap
    outputs: JsonMap
    started_at: str
    ended_at: str | None


@dataclass(frozen=True)
class LoopEvent:
    """One journal entry."""

    id: int
    run_id: int
    kind: str
    payload: JsonMap
    created_at: str
    prev_sha256: str
    sha256: str


@dataclass(frozen=True)
class BrokenLink:
    """The first journal entry whose hash does not hold, and why."""

    event_id: int
    problem: str


_RUN_COLS = (
    "id, status, limits, cycle, runtime_s, repo, stop_requested, stop_reason, exit_code, "
    "started_at, ended_at"
)
_CYCLE_COLS = (
    "run_id, number, repo, status, runtime_s, tokens, promoted, summary, started_at, ended_at"
)
_STEP_COLS = "run_id, cycle, position, step, status, reason, counts, outputs, started_at, ended_at"


def _run(row: tuple[Any, ...]) -> LoopRun:
    values = list(row)
    values[2] = json.loads(values[2])
    return LoopRun(*values)


def _cycle(row: tuple[Any, ...]) -> LoopCycle:
    values = list(row)
    values[7] = json.loads(values[7])
    return LoopCycle(*values)


def _step(row: tuple[Any, ...]) -> LoopStep:
    values = list(row)
    values[6], values[7] = json.loads(values[6]), json.loads(values[7])
    return LoopStep(*values)


def event_hash(prev: str, run_id: int, kind: str, payload: str, created_at: str) -> str:
    """The sha256 an event row must hold: over the previous hash and its own content."""
    text = "\n".join((prev, str(run_id), kind, payload, created_at))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _append(conn: sqlite3.Connection, run_id: int, kind: str, payload: JsonMap) -> None:
    row = conn.execute("SELECT sha256 FROM loop_events ORDER BY id DESC LIMIT 1").fetchone()
    prev = row[0] if row else ""
    text, created = _dumps(payload), now_iso()
    conn.execute(
        "INSERT INTO loop_events (run_id, kind, payload, created_at, prev_sha256, sha256) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, kind, text, created, prev, event_hash(prev, run_id, kind, text, created)),
    )


def add_event(conn: sqlite3.Connection, run_id: int, kind: str, payload: JsonMap) -> None:
    """Append one event to the journal, in its own transaction."""
    with transaction(conn):
        _append(conn, run_id, kind, payload)


def start_run(conn: sqlite3.Connection, limits: JsonMap) -> int:
    """Record a new running loop with its limits, and its `started` event; its id."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO loop_runs (status, limits, started_at) VALUES ('running', ?, ?)",
            (_dumps(limits), now_iso()),
        )
        run_id = int(cursor.lastrowid or 0)
        _append(conn, run_id, "started", {"limits": limits})
    return run_id


def get_run(conn: sqlite3.Connection, run_id: int) -> LoopRun | None:
    """The run `run_id`, or None."""
    row = conn.execute(f"SELECT {_RUN_COLS} FROM loop_runs WHERE id = ?", (run_id,)).fetchone()
    return _run(row) if row else None


def latest_run(conn: sqlite3.Connection) -> LoopRun | None:
    """The most recent run, or None."""
    row = conn.execute(f"SELECT {_RUN_COLS} FROM loop_runs ORDER BY id DESC LIMIT 1").fetchone()
    return _run(row) if row else None


def unfinished_run(conn: sqlite3.Connection) -> LoopRun | None:
    """The run that has not ended (a crashed or running one), or None."""
    row = conn.execute(
        f"SELECT {_RUN_COLS} FROM loop_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return _run(row) if row else None


def save_progress(
    conn: sqlite3.Connection, run_id: int, *, cycle: int, runtime_s: float, repo: str | None
) -> None:
    """Record where the run stands: its cycle, runtime used and repository."""
    with transaction(conn):
        conn.execute(
            "UPDATE loop_runs SET cycle = ?, runtime_s = ?, repo = ? WHERE id = ?",
            (cycle, runtime_s, repo, run_id),
        )


def record_runtime(conn: sqlite3.Connection, run_id: int, runtime_s: float) -> None:
    """Record the runtime the run has used so far (a heartbeat while a step runs)."""
    with transaction(conn):
        conn.execute("UPDATE loop_runs SET runtime_s = ? WHERE id = ?", (runtime_s, run_id))


def request_stop(conn: sqlite3.Connection, run_id: int, reason: str) -> None:
    """Ask the running loop to stop (it notices within seconds); journalled."""
    with transaction(conn):
        conn.execute("UPDATE loop_runs SET stop_requested = ? WHERE id = ?", (reason, run_id))
        _append(conn, run_id, "stop_requested", {"reason": reason})


def reopen_run(conn: sqlite3.Connection, run_id: int) -> None:
    """Mark an ended (stopped) run running again, for `cra loop resume`; journalled."""
    with transaction(conn):
        conn.execute(
            "UPDATE loop_runs SET status = 'running', stop_reason = NULL, exit_code = NULL, "
            "ended_at = NULL WHERE id = ?",
            (run_id,),
        )
        _append(conn, run_id, "reopened", {})


def clear_stop(conn: sqlite3.Connection, run_id: int) -> None:
    """Forget an honoured stop request (a resumed run runs again)."""
    with transaction(conn):
        conn.execute("UPDATE loop_runs SET stop_requested = NULL WHERE id = ?", (run_id,))


def stop_requested(conn: sqlite3.Connection, run_id: int) -> str | None:
    """The reason given to `cra loop stop` for this run, or None."""
    row = conn.execute("SELECT stop_requested FROM loop_runs WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def end_run(
    conn: sqlite3.Connection, run_id: int, *, reason: str, exit_code: int, runtime_s: float
) -> None:
    """Mark the run ended with its stop reason and exit code, and journal it."""
    with transaction(conn):
        conn.execute(
            "UPDATE loop_runs SET status = 'ended', stop_reason = ?, exit_code = ?, "
            "runtime_s = ?, ended_at = ? WHERE id = ?",
            (reason, exit_code, runtime_s, now_iso(), run_id),
        )
        _append(conn, run_id, "ended", {"reason": reason, "exit_code": exit_code})


def start_cycle(conn: sqlite3.Connection, run_id: int, number: int, repo: str | None) -> None:
    """Record cycle `number` as running (again, after a crash: kept as it was)."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO loop_cycles (run_id, number, repo, status, started_at) "
            "VALUES (?, ?, ?, 'running', ?) ON CONFLICT (run_id, number) DO NOTHING",
            (run_id, number, repo, now_iso()),
        )
        conn.execute("UPDATE loop_runs SET cycle = ? WHERE id = ?", (number, run_id))
        _append(conn, run_id, "cycle_started", {"cycle": number, "repo": repo})


def update_cycle(
    conn: sqlite3.Connection, run_id: int, number: int, *, runtime_s: float, tokens: int
) -> None:
    """Record the runtime and tokens cycle `number` has used so far."""
    with transaction(conn):
        conn.execute(
            "UPDATE loop_cycles SET runtime_s = ?, tokens = ? WHERE run_id = ? AND number = ?",
            (runtime_s, tokens, run_id, number),
        )


def end_cycle(
    conn: sqlite3.Connection,
    run_id: int,
    number: int,
    *,
    status: str,
    promoted: int,
    summary: JsonMap,
) -> None:
    """Close cycle `number` with its outcome, promotions and summary; journalled."""
    with transaction(conn):
        conn.execute(
            "UPDATE loop_cycles SET status = ?, promoted = ?, summary = ?, ended_at = ? "
            "WHERE run_id = ? AND number = ?",
            (status, promoted, _dumps(summary), now_iso(), run_id, number),
        )
        _append(
            conn, run_id, "cycle_ended", {"cycle": number, "status": status, "promoted": promoted}
        )


def cycles(conn: sqlite3.Connection, run_id: int) -> list[LoopCycle]:
    """Every cycle of the run, in order."""
    rows = conn.execute(
        f"SELECT {_CYCLE_COLS} FROM loop_cycles WHERE run_id = ? ORDER BY number", (run_id,)
    ).fetchall()
    return [_cycle(r) for r in rows]


def start_step(conn: sqlite3.Connection, run_id: int, cycle: int, position: int, step: str) -> None:
    """Record a step as running; an earlier row of it left running by a crash becomes
    `interrupted` (journalled), so the rows keep what happened."""
    with transaction(conn):
        stale = conn.execute(
            "UPDATE loop_steps SET status = 'interrupted', ended_at = ? WHERE run_id = ? "
            "AND cycle = ? AND position = ? AND status = 'running'",
            (now_iso(), run_id, cycle, position),
        ).rowcount
        if stale:
            _append(conn, run_id, "step_interrupted", {"cycle": cycle, "step": step})
        conn.execute(
            "INSERT INTO loop_steps (run_id, cycle, position, step, status, started_at) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, cycle, position, step, now_iso()),
        )
        _append(conn, run_id, "step_started", {"cycle": cycle, "step": step})


def end_step(
    conn: sqlite3.Connection,
    run_id: int,
    cycle: int,
    position: int,
    *,
    status: str,
    reason: str | None,
    counts: JsonMap,
    outputs: JsonMap,
) -> None:
    """Close the running step with its outcome, counts and outputs; journalled."""
    with transaction(conn):
        conn.execute(
            "UPDATE loop_steps SET status = ?, reason = ?, counts = ?, outputs = ?, ended_at = ? "
            "WHERE run_id = ? AND cycle = ? AND position = ? AND status = 'running'",
            (status, reason, _dumps(counts), _dumps(outputs), now_iso(), run_id, cycle, position),
        )
        step = conn.execute(
            "SELECT step FROM loop_steps WHERE run_id = ? AND cycle = ? AND position = ? "
            "ORDER BY id DESC LIMIT 1",
            (run_id, cycle, position),
        ).fetchone()
        _append(
            conn,
            run_id,
            "step_ended",
            {
                "cycle": cycle,
                "step": step[0] if step else None,
                "status": status,
                "reason": reason,
                "counts": counts,
            },
        )


def steps(conn: sqlite3.Connection, run_id: int, cycle: int | None = None) -> list[LoopStep]:
    """The step rows of the run (or of one cycle), in the order they ran."""
    where, args = (
        ("run_id = ?", [run_id]) if cycle is None else ("run_id = ? AND cycle = ?", [run_id, cycle])
    )
    rows = conn.execute(
        f"SELECT {_STEP_COLS} FROM loop_steps WHERE {where} ORDER BY id", args
    ).fetchall()
    return [_step(r) for r in rows]


def events(
    conn: sqlite3.Connection, run_id: int | None = None, last: int | None = None
) -> list[LoopEvent]:
    """Journal entries (of one run), oldest first; only the `last` N when given."""
    where, args = ("", []) if run_id is None else ("WHERE run_id = ?", [run_id])
    rows = conn.execute(
        "SELECT id, run_id, kind, payload, created_at, prev_sha256, sha256 FROM loop_events "
        f"{where} ORDER BY id DESC" + (" LIMIT ?" if last is not None else ""),
        [*args, last] if last is not None else args,
    ).fetchall()
    return [LoopEvent(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in reversed(rows)]


def latest_event(conn: sqlite3.Connection, run_id: int, kind: str) -> LoopEvent | None:
    """The run's newest journal entry of `kind`, or None when it has none."""
    row = conn.execute(
        "SELECT id, run_id, kind, payload, created_at, prev_sha256, sha256 FROM loop_events "
        "WHERE run_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
        (run_id, kind),
    ).fetchone()
    return (
        LoopEvent(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])
        if row
        else None
    )


def verify_journal(conn: sqlite3.Connection) -> tuple[int, BrokenLink | None]:
    """Recompute the whole chain: how many events hold, and the first broken link."""
    prev, checked = "", 0
    for row in conn.execute(
        "SELECT id, run_id, kind, payload, created_at, prev_sha256, sha256 FROM loop_events "
        "ORDER BY id"
    ):
        event_id, run_id, kind, payload, created, stored_prev, stored = row
        if stored_prev != prev:
            return checked, BrokenLink(event_id, "does not follow the event before it")
        if event_hash(prev, run_id, kind, payload, created) != stored:
            return checked, BrokenLink(event_id, "its content does not match its sha256")
        prev, checked = stored, checked + 1
    return checked, None


def latest_cycle(conn: sqlite3.Connection, run_id: int) -> LoopCycle | None:
    """The run's highest-numbered cycle, or None before its first."""
    row = conn.execute(
        f"SELECT {_CYCLE_COLS} FROM loop_cycles WHERE run_id = ? ORDER BY number DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    return _cycle(row) if row else None
