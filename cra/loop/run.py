"""Running the loop: `start_loop`, `resume_loop` and `request_stop` (see the package).

The loop's state lives in raw.db (:mod:`cra.db.loop`), written at every step boundary:
the cycle number, the runtime used (counted only while a loop process runs) and the
cycle's tokens (read from `llm_calls` since the cycle started), so a loop killed at any
point resumes at the step it was in with nothing reset. One loop per workspace: the
process holds `db/loop.lock` (an flock, released by the kernel however the process ends)
and takes the workspace writer lock for each step.
"""

from __future__ import annotations

import sqlite3
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.db import loop as store
from cra.db.llm_calls import tokens_since
from cra.errors import CraError, UsageError
from cra.lock import WorkspaceBusy, writer_lock
from cra.loop.decide import Action, Decision, StopReason, decide
from cra.loop.interrupts import Watch
from cra.loop.limits import Limits, limits_from, limits_from_record
from cra.loop.queue import repo_domains, repo_queue
from cra.loop.report import write_report
from cra.loop.state import (
    active_metrics,
    current_strategy,
    finished_steps,
    outputs_of,
    progress_of,
    recorded,
    with_outside,
)
from cra.loop.steps import DEFAULT_STEPS, Step, StepContext, StepResult
from cra.loop.strategy import EpochBounds, rewrite
from cra.workspace import Workspace
from cra.writing import hold_workspace

Echo = Callable[[str], None]

HEARTBEAT_POLLS = 10
"""The watch records the runtime every this many polls (about 5 s)."""

RESUMABLE = (StopReason.STOP_REQUESTED, StopReason.KILL_SWITCH, StopReason.INTERRUPTED)
"""Runs ended by someone stopping them can be resumed; the others ended for good."""


class LoopRunning(CraError, BlockingIOError):
    """Another process runs a loop in this workspace."""


class NoLoop(CraError, LookupError):
    """There is no loop to resume, stop or report on."""


@dataclass(frozen=True)
class LoopOutcome:
    """How a loop run ended: its id, reason, exit code and final report."""

    run_id: int
    reason: StopReason
    detail: str
    report_md: Path
    report_json: Path

    @property
    def exit_code(self) -> int:
        """The exit code `cra loop start` ends with."""
        return self.reason.exit_code


def _quiet(_message: str) -> None:
    pass


class _Clock:
    """Runtime used: what earlier processes recorded plus this process's time."""

    def __init__(self, before_s: float) -> None:
        self.before_s = before_s
        self.started = time.monotonic()

    def runtime(self) -> float:
        return self.before_s + time.monotonic() - self.started


class _Driver:
    """One process's share of a loop run."""

    def __init__(
        self, workspace: Workspace, run: store.LoopRun, steps: Sequence[Step], echo: Echo
    ) -> None:
        self.ws, self.run_id, self.steps, self.echo = workspace, run.id, tuple(steps), echo
        self.limits: Limits = limits_from_record(run.limits)
        self.clock = _Clock(run.runtime_s)
        self.repo = run.repo
        self.pivot = False
        self.deadline: float | None = None
        self.cycle_since: str | None = None
        self.beats = 0
        self.watch = Watch(self._probe)
        self.strategy = current_strategy(workspace, run.id)

    def _probe(self) -> str | None:
        """What should stop the running step now (polled from the watch's thread, which
        also records the runtime every few seconds, so a kill -9 loses little of it)."""
        if self.ws.stop_path.exists():
            return "kill_switch"
        self.beats += 1
        with closing(self.ws.raw_db()) as conn:
            if store.stop_requested(conn, self.run_id):
                return "stop_requested"
            tokens = tokens_since(conn, self.cycle_since) if self.cycle_since else 0
            if self.beats % HEARTBEAT_POLLS == 0:
                store.record_runtime(conn, self.run_id, self.clock.runtime())
        if self.deadline is not None and time.monotonic() > self.deadline:
            return "cycle_timeout"
        if self.clock.runtime() >= self.limits.max_hours * 3600:
            return "max_hours"
        if tokens > self.limits.tokens_per_cycle:
            return "token_budget"
        return None

    def _checkpoint(self) -> None:
        if self.watch.cause is not None:
            raise KeyboardInterrupt

    def _save(self, cycle: int, cycle_runtime_s: float | None = None) -> None:
        state = recorded(self.ws, self.run_id)
        with closing(self.ws.raw_db()) as conn:
            store.save_progress(
                conn, self.run_id, cycle=cycle, runtime_s=self.clock.runtime(), repo=self.repo
            )
            if cycle_runtime_s is not None and state.current is not None:
                store.update_cycle(
                    conn, self.run_id, cycle, runtime_s=cycle_runtime_s, tokens=state.tokens
                )

    def _decision(self, *, between_cycles: bool, cycle_runtime_s: float = 0.0) -> Decision:
        state = recorded(self.ws, self.run_id)
        progress = with_outside(
            progress_of(state, self.clock.runtime(), cycle_runtime_s),
            metrics=active_metrics(self.ws, self.limits),
            queue=repo_queue(self.ws, self.strategy.back_domains) if between_cycles else (),
            cause=self.watch.cause,
        )
        return decide(self.limits, progress, between_cycles=between_cycles)

    def drive(self) -> Decision:
        """Run cycles until the engine says stop; the stop decision."""
        with self.watch.running():
            while True:
                state = recorded(self.ws, self.run_id)
                if state.current is None:
                    decision = self._decision(between_cycles=True)
                    if decision.action is Action.STOP:
                        return decision
                    self._between(decision, len(state.done))
                    number = len(state.done) + 1
                else:
                    number = state.current.number
                stop = self._cycle(number)
                if stop is not None:
                    return stop

    def _between(self, decision: Decision, done: int) -> None:
        self.pivot = decision.action is Action.PIVOT
        with closing(self.ws.raw_db()) as conn:
            if self.pivot:
                store.add_event(conn, self.run_id, "pivot", {"detail": decision.detail})
                self.echo(decision.detail)
            if done and done % self.limits.meta_every == 0:
                self._meta(conn)

    def _meta(self, conn: sqlite3.Connection) -> None:
        """The meta step: rewrite the strategy from the last `meta_every` cycles and
        those before them, and journal the old and new strategy and why."""
        every = store.cycles(conn, self.run_id)
        n = self.limits.meta_every
        last, before = every[-n:], every[-2 * n : -n]
        bounds = EpochBounds(
            base=self.ws.config.settings.ranker.epochs,
            step=self.limits.meta_epochs_step,
            most=self.limits.meta_max_epochs,
        )
        new = rewrite(self.strategy, last, before, bounds, repo_domains(self.ws))
        store.add_event(
            conn,
            self.run_id,
            "meta",
            {
                "cycles": [c.number for c in last],
                "promoted": sum(c.promoted for c in last),
                "promoted_before": sum(c.promoted for c in before),
                "failed": sum(c.status == "failed" for c in last),
                "old": self.strategy.as_dict(),
                "new": new.strategy.as_dict(),
                "why": list(new.why),
            },
        )
        for line in new.why:
            self.echo(f"meta: {line}")
        self.strategy = new.strategy

    def _cycle(self, number: int) -> Decision | None:
        """Run (or go on with) cycle `number`; a stop decision, or None to go on."""
        state = recorded(self.ws, self.run_id)
        carried = state.current.runtime_s if state.current else 0.0
        with closing(self.ws.raw_db()) as conn:
            store.start_cycle(conn, self.run_id, number, self.repo)
        current = recorded(self.ws, self.run_id).current
        self.cycle_since = current.started_at if current else None
        started = time.monotonic() - carried
        self.deadline = started + self.limits.cycle_timeout_s
        pivot, self.pivot = self.pivot, False
        kept = finished_steps(state.current_steps)
        failed = any(s.status == "failed" for s in kept.values())
        self.echo(f"cycle {number}" + (f" ({self.repo})" if self.repo else ""))
        for position, step in enumerate(self.steps):
            if position in kept or failed:
                continue
            decision = self._decision(
                between_cycles=False, cycle_runtime_s=time.monotonic() - started
            )
            if decision.action is Action.STOP:
                return self._stop_in_cycle(number, decision, time.monotonic() - started)
            ctx = StepContext(
                self.ws,
                self.limits,
                number,
                self.repo,
                repo_queue(self.ws, self.strategy.back_domains),
                pivot,
                outputs_of(kept),
                self._checkpoint,
                self.echo,
                self.strategy,
                self.cycle_since,
            )
            result = self._step(number, position, step, ctx)
            if result is None:
                return self._stop_in_cycle(
                    number, self._decision(between_cycles=False), time.monotonic() - started
                )
            self._save(number, time.monotonic() - started)
            kept = finished_steps(recorded(self.ws, self.run_id).current_steps)
            failed = result.status == "failed"
        self._close_cycle(number, "failed" if failed else "done", pivot, time.monotonic() - started)
        return None

    def _step(self, number: int, position: int, step: Step, ctx: StepContext) -> StepResult | None:
        """Run one step and record it; None when it was cut (the watch holds why)."""
        with closing(self.ws.raw_db()) as conn:
            store.start_step(conn, self.run_id, number, position, step.name)
        self.echo(f"  {step.name}")
        try:
            with self.watch.armed(), hold_workspace(self.ws, f"cra loop ({step.name})"):
                result = step.run(ctx)
        except KeyboardInterrupt:
            self._end_step(number, position, StepResult("cut", f"cut: {self.watch.cause}"))
            return None
        except CraError as exc:
            result = StepResult("failed", str(exc))
        except Exception as exc:  # recorded, and the cycle counts as failed
            self.echo("".join(traceback.format_exception(exc)))
            result = StepResult("failed", f"{type(exc).__name__}: {exc}")
        self._end_step(number, position, result)
        if result.outputs.get("repo"):
            self.repo = result.outputs["repo"]
        return result

    def _end_step(self, number: int, position: int, result: StepResult) -> None:
        with closing(self.ws.raw_db()) as conn:
            store.end_step(
                conn,
                self.run_id,
                number,
                position,
                status=result.status,
                reason=result.reason,
                counts=dict(result.counts),
                outputs=dict(result.outputs),
            )
        if result.reason:
            self.echo(f"    {result.status}: {result.reason}")

    def _stop_in_cycle(self, number: int, decision: Decision, cycle_runtime_s: float) -> Decision:
        """A stop inside a cycle. A stop someone asked for leaves the cycle open for
        `cra loop resume`; a limit closes it: `cut` (its time ran out) or `stopped`."""
        self._save(number, cycle_runtime_s)
        if decision.reason is StopReason.CYCLE_TIMEOUT:
            self._close_cycle(number, "cut", False, cycle_runtime_s)
        elif decision.reason not in RESUMABLE:
            self._close_cycle(number, "stopped", False, cycle_runtime_s)
        return decision

    def _close_cycle(self, number: int, status: str, pivot: bool, runtime_s: float) -> None:
        self._save(number, runtime_s)
        rows = finished_steps(recorded(self.ws, self.run_id).current_steps)
        summary = _summary(outputs_of(rows), {rows[p].step: rows[p].status for p in rows}, pivot)
        promoted = len([r for r in summary["promoted"] if r])
        with closing(self.ws.raw_db()) as conn:
            store.end_cycle(
                conn, self.run_id, number, status=status, promoted=promoted, summary=summary
            )
        self.deadline = None
        self.cycle_since = None


def _summary(
    outputs: Mapping[str, str], statuses: Mapping[str, str], pivot: bool
) -> dict[str, Any]:
    def refs(key: str) -> list[str]:
        return [r for r in outputs.get(key, "").split(",") if r]

    def count(key: str) -> int | None:
        return int(outputs[key]) if key in outputs else None

    promoted, rolled = refs("promoted"), refs("rolled_back")
    improved = refs("improved") if "improved" in outputs else promoted
    return {
        "repo": outputs.get("repo"),
        "pivot": pivot,
        "steps": dict(statuses),
        "candidates": refs("candidates"),
        "promoted": promoted,
        "improved": improved,
        "rolled_back": rolled,
        "helped": bool(improved) and not rolled,
        "new_commits": count("new"),
        "new_tasks": count("tasks"),
    }


def _finish(workspace: Workspace, driver: _Driver, decision: Decision) -> LoopOutcome:
    reason = decision.reason or StopReason.INTERRUPTED
    with closing(workspace.raw_db()) as conn:
        store.end_run(
            conn,
            driver.run_id,
            reason=reason.value,
            exit_code=reason.exit_code,
            runtime_s=driver.clock.runtime(),
        )
    md, js = write_report(workspace, driver.run_id, reason.value, decision.detail)
    driver.echo(f"loop ended: {reason.value} ({decision.detail}); report {md}")
    return LoopOutcome(driver.run_id, reason, decision.detail, md, js)


def _run_locked(workspace: Workspace, command: str, body: Callable[[], LoopOutcome]) -> LoopOutcome:
    try:
        lock = writer_lock(workspace.loop_lock_path, command)
        lock.__enter__()
    except WorkspaceBusy as exc:
        raise LoopRunning(
            f"a loop already runs in this workspace: {exc.holder.describe()}",
            hint="`cra loop status` shows it; `cra loop stop` ends it",
        ) from None
    try:
        return body()
    finally:
        lock.__exit__(None, None, None)


def start_loop(
    workspace: Workspace,
    overrides: Mapping[str, Any] | None = None,
    *,
    steps: Sequence[Step] = DEFAULT_STEPS,
    echo: Echo | None = None,
) -> LoopOutcome:
    """Start a new loop run with the `[loop]` settings and `overrides`, and run it to
    its end. A crashed run must be resumed (or is refused), never silently replaced."""
    limits = limits_from(workspace.config.settings.loop, overrides)
    if workspace.stop_path.exists():
        raise UsageError(
            f"the kill switch {workspace.stop_path} is there", hint="remove it to start a loop"
        )

    def body() -> LoopOutcome:
        with closing(workspace.raw_db()) as conn:
            left = store.unfinished_run(conn)
            if left is not None:
                raise UsageError(
                    f"loop run {left.id} did not end (cycle {left.cycle})",
                    hint="continue it with `cra loop resume`",
                )
            run_id = store.start_run(conn, limits.as_dict())
            run = store.get_run(conn, run_id)
        if run is None:  # pragma: no cover - just inserted
            raise NoLoop("the new loop run vanished")
        driver = _Driver(workspace, run, steps, echo or _quiet)
        return _finish(workspace, driver, driver.drive())

    return _run_locked(workspace, "cra loop start", body)


def resume_loop(
    workspace: Workspace, *, steps: Sequence[Step] = DEFAULT_STEPS, echo: Echo | None = None
) -> LoopOutcome:
    """Continue the last run at the step it was in: after a crash, or after it was
    stopped (`cra loop stop`, STOP file, a signal), with cycle, runtime and tokens kept."""

    if workspace.stop_path.exists():
        raise UsageError(
            f"the kill switch {workspace.stop_path} is still there", hint="remove it to resume"
        )

    def body() -> LoopOutcome:
        with closing(workspace.raw_db()) as conn:
            run = store.unfinished_run(conn) or store.latest_run(conn)
            if run is None:
                raise NoLoop("no loop has run in this workspace", hint="start one: cra loop start")
            if run.status == "ended":
                reason = StopReason(run.stop_reason)
                if reason not in RESUMABLE:
                    raise UsageError(
                        f"loop run {run.id} ended for good ({reason.value})",
                        hint="start a new one: cra loop start",
                    )
                store.reopen_run(conn, run.id)
            store.clear_stop(conn, run.id)
            store.add_event(
                conn, run.id, "resumed", {"cycle": run.cycle, "runtime_s": run.runtime_s}
            )
            run = store.get_run(conn, run.id)
        if run is None:  # pragma: no cover - read just above
            raise NoLoop("the loop run vanished")
        driver = _Driver(workspace, run, steps, echo or _quiet)
        return _finish(workspace, driver, driver.drive())

    return _run_locked(workspace, "cra loop resume", body)


def request_stop(workspace: Workspace, reason: str = "cra loop stop") -> int:
    """Ask the running loop to stop; the run's id (NoLoop when none runs)."""
    with closing(workspace.raw_db()) as conn:
        run = store.unfinished_run(conn)
        if run is None:
            raise NoLoop("no loop is running in this workspace")
        store.request_stop(conn, run.id, reason)
    return run.id
