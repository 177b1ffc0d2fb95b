"""What is running now: the loop's cycle and step, else the latest harness and training run.

Read in one read transaction, so a snapshot never holds half of what a writer commits.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from cra.db import loop as loop_store
from cra.db.connection import table_names
from cra.db.runs import current_run
from cra.db.train_steps import latest_step
from cra.fsutil import now_iso

LOOP_TABLES = frozenset({"loop_runs", "loop_cycles", "loop_steps"})


@dataclass(frozen=True)
class LoopProgress:
    """The latest loop run: its cycle (of at most `max_cycles`) and the step it is on."""

    run: int
    status: str
    cycle: int
    max_cycles: int | None
    cycle_status: str | None
    repo: str | None
    step: str | None
    step_status: str | None
    step_position: int | None  # 1-based, within the cycle
    steps_per_cycle: int | None  # known once a cycle has run its steps
    steps: tuple[tuple[str, str, str | None], ...]  # the cycle's (step, status, reason)
    runtime_s: float
    stop_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        out = dict(self.__dict__)
        out["steps"] = [{"step": s, "status": st, "reason": r} for s, st, r in self.steps]
        return out


@dataclass(frozen=True)
class LiveStatus:
    """One consistent read of what is running: the loop, the harness and training."""

    read_at: str
    loop: LoopProgress | None
    harness: dict[str, Any] | None
    training: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "read_at": self.read_at,
            "loop": None if self.loop is None else self.loop.as_dict(),
            "harness": self.harness,
            "training": self.training,
        }


def read_live(conn: sqlite3.Connection) -> LiveStatus:
    """What is running, from `conn` (the caller holds the read transaction)."""
    loop = loop_progress(conn) if LOOP_TABLES <= table_names(conn) else None
    run = current_run(conn)
    harness = None
    if run is not None:
        harness = {
            "label": run.label,
            "status": run.status,
            "repo": run.repo,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "error": run.error,
        }
    step = latest_step(conn)
    training = None
    if step is not None:
        training = {
            "run_id": step.run_id,
            "adapter": step.adapter,
            "method": step.method,
            "step": step.step,
            "epoch": step.epoch,
            "loss": step.loss,
            "created_at": step.created_at,
        }
    return LiveStatus(now_iso(), loop, harness, training)


def loop_progress(conn: sqlite3.Connection) -> LoopProgress | None:
    """The latest loop run's progress; None when no loop has run."""
    run = loop_store.latest_run(conn)
    if run is None:
        return None
    current = loop_store.latest_cycle(conn, run.id)
    mine, earlier = [], []
    if current is not None:  # this cycle's steps, and the one before's to count them
        mine = loop_store.steps(conn, run.id, current.number)
        earlier = [s.position for s in loop_store.steps(conn, run.id, current.number - 1)]
    step = next((s for s in reversed(mine) if s.status == "running"), mine[-1] if mine else None)
    limit = run.limits.get("max_cycles")
    return LoopProgress(
        run=run.id,
        status=run.status,
        cycle=current.number if current is not None else 0,
        max_cycles=limit if isinstance(limit, int) else None,
        cycle_status=current.status if current is not None else None,
        repo=current.repo if current is not None else run.repo,
        step=step.step if step is not None else None,
        step_status=step.status if step is not None else None,
        step_position=step.position + 1 if step is not None else None,
        steps_per_cycle=max(earlier) + 1 if earlier else None,
        steps=tuple((s.step, s.status, s.reason) for s in mine),
        runtime_s=run.runtime_s,
        stop_reason=run.stop_reason,
    )
