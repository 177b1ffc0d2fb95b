"""Reading a loop's recorded state into what the decision engine and the report need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace

from cra.adapters.registry import active_version
from cra.db.llm_calls import tokens_since
from cra.db.loop import LoopCycle, LoopStep, cycles, latest_event, steps
from cra.loop.decide import Progress
from cra.loop.limits import Limits
from cra.loop.strategy import Strategy, strategy_from
from cra.workspace import Workspace

ENDED_STEP = ("done", "skipped", "failed")
"""Step outcomes a resumed cycle keeps; a `running`, `cut` or `interrupted` step runs again."""


def stale_cycles(done: Sequence[LoopCycle]) -> int:
    """Finished cycles since the last improvement: a promotion beyond the noise floor
    (`improved` of the cycle's summary; a pivot starts the count afresh)."""
    count = 0
    for cycle in reversed(done):
        improved = cycle.summary.get("improved")
        if (cycle.promoted > 0) if improved is None else bool(improved):
            break
        count += 1
        if cycle.summary.get("pivot"):
            break
    return count


def cycles_on_repo(done: Sequence[LoopCycle]) -> int:
    """Finished cycles since the loop last turned to a repository (its last pivot)."""
    count = 0
    for cycle in reversed(done):
        count += 1
        if cycle.summary.get("pivot"):
            break
    return count


def failed_in_a_row(done: Sequence[LoopCycle]) -> int:
    """Consecutive failed cycles at the end."""
    count = 0
    for cycle in reversed(done):
        if cycle.status != "failed":
            break
        count += 1
    return count


def active_metrics(workspace: Workspace, limits: Limits) -> tuple[tuple[str, float], ...]:
    """The latest eval metrics of the active version of each adapter a target names."""
    out: dict[str, float] = {}
    with closing(workspace.raw_db()) as conn:
        for adapter in sorted({t.adapter for t in limits.targets}):
            version = active_version(conn, workspace.root, adapter)
            if version is None:
                continue
            results = [r for r in version.eval_metrics.values() if isinstance(r, dict)]
            results.sort(key=lambda r: str(r.get("evaluated_at", "")))
            for metric, value in (results[-1].get("metrics", {}) if results else {}).items():
                out[f"{adapter}.{metric}"] = float(value)
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class Recorded:
    """A run's cycles and the current cycle's steps, as raw.db holds them."""

    done: tuple[LoopCycle, ...]
    current: LoopCycle | None
    current_steps: tuple[LoopStep, ...]
    tokens: int


def recorded(workspace: Workspace, run_id: int) -> Recorded:
    """Read the run's cycles; the current (running) cycle's steps and tokens so far."""
    with closing(workspace.raw_db()) as conn:
        every = cycles(conn, run_id)
        done = tuple(c for c in every if c.status != "running")
        current = next((c for c in every if c.status == "running"), None)
        rows = tuple(steps(conn, run_id, current.number)) if current else ()
        tokens = tokens_since(conn, current.started_at) if current else 0
    return Recorded(done, current, rows, tokens)


def finished_steps(rows: Sequence[LoopStep]) -> dict[int, LoopStep]:
    """The latest row of each position that ended for good (kept on resume)."""
    out: dict[int, LoopStep] = {}
    for row in rows:
        if row.status in ENDED_STEP:
            out[row.position] = row
        else:
            out.pop(row.position, None)
    return out


def outputs_of(rows: Mapping[int, LoopStep]) -> dict[str, str]:
    """The outputs of a cycle's finished steps, merged in step order."""
    merged: dict[str, str] = {}
    for position in sorted(rows):
        merged.update({k: str(v) for k, v in rows[position].outputs.items()})
    return merged


def progress_of(state: Recorded, runtime_s: float, cycle_runtime_s: float) -> Progress:
    """The engine's view of the recorded state (interrupts and queue filled in later)."""
    last = state.done[-1] if state.done else None
    return Progress(
        cycles_done=len(state.done),
        runtime_s=runtime_s,
        cycle_runtime_s=cycle_runtime_s,
        cycle_tokens=state.tokens if state.current else (last.tokens if last else 0),
        stale_cycles=stale_cycles(state.done),
        failed_in_a_row=failed_in_a_row(state.done),
        cycles_on_repo=cycles_on_repo(state.done),
        cycle_cut=bool(last and last.status == "cut" and state.current is None),
    )


def with_outside(
    progress: Progress,
    *,
    metrics: tuple[tuple[str, float], ...],
    queue: tuple[str, ...],
    cause: str | None,
) -> Progress:
    """`progress` with the measured metrics, the repository queue and the watch's cause."""
    return replace(
        progress,
        metrics=metrics,
        queue=queue,
        kill_switch=cause == "kill_switch",
        stop_requested=cause == "stop_requested",
        interrupted=cause == "interrupted",
        cycle_cut=progress.cycle_cut or cause == "cycle_timeout",
    )


def current_strategy(workspace: Workspace, run_id: int) -> Strategy:
    """The run's strategy: the `new` one of its latest `meta` event (the default before
    the first), so a resumed loop goes on with it."""
    with closing(workspace.raw_db()) as conn:
        event = latest_event(conn, run_id, "meta")
    if event is None or "new" not in event.payload:
        return Strategy()
    return strategy_from(event.payload["new"])
