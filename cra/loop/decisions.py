"""Per cycle, what the loop decided: the gate's verdict on the cycle's candidates and the
loop's next move (go on, pivot and why, or the stop reason), read from the loop's tables."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass

from cra.db import loop as store
from cra.workspace import Workspace


@dataclass(frozen=True)
class CycleDecision:
    """One finished cycle: its repository, candidates, the gate's verdict and what the
    loop did next."""

    number: int
    repo: str | None
    status: str
    runtime_s: float
    candidates: tuple[str, ...]
    gate: str
    next_move: str

    def line(self) -> str:
        """The decision as one line."""
        trained = ", ".join(self.candidates) or "no candidate"
        return (
            f"cycle {self.number} ({self.repo or '-'}, {self.status}, {self.runtime_s:.0f} s): "
            f"{trained}; gate: {self.gate}; then {self.next_move}"
        )


def _gate(steps: list[store.LoopStep]) -> str:
    promote = next((s for s in steps if s.step == "promote"), None)
    if promote is None:
        return "-"
    if promote.status != "done":
        return f"{promote.status} ({promote.reason})" if promote.reason else promote.status
    if promote.counts.get("promoted"):
        return "promoted " + str(promote.outputs.get("promoted", ""))
    return f"rejected ({promote.reason})" if promote.reason else "nothing promoted"


def cycle_decisions(workspace: Workspace, run_id: int) -> list[CycleDecision]:
    """The run's finished cycles with their decisions, oldest first."""
    with closing(workspace.raw_db()) as conn:
        return decisions_of(conn, run_id)


def decisions_of(conn: sqlite3.Connection, run_id: int) -> list[CycleDecision]:
    """The run's finished cycles with their decisions, read from `conn` (which may be
    read-only), oldest first."""
    run = store.get_run(conn, run_id)
    cycles = [c for c in store.cycles(conn, run_id) if c.status != "running"]
    pivots = iter([e for e in store.events(conn, run_id) if e.kind == "pivot"])
    steps = {c.number: store.steps(conn, run_id, c.number) for c in cycles}
    moves: dict[int, str] = {}
    for cycle in cycles:
        if cycle.summary.get("pivot") and cycle.number > 1:
            event = next(pivots, None)
            detail = event.payload.get("detail") if event else None
            moves[cycle.number - 1] = f"pivot: {detail}" if detail else "pivot"
    if cycles and run is not None and run.stop_reason:
        moves[cycles[-1].number] = f"stop: {run.stop_reason}"
    return [
        CycleDecision(
            number=c.number,
            repo=c.summary.get("repo") or c.repo,
            status=c.status,
            runtime_s=c.runtime_s,
            candidates=tuple(c.summary.get("candidates") or ()),
            gate=_gate(steps[c.number]),
            next_move=moves.get(c.number, "continue"),
        )
        for c in cycles
    ]
