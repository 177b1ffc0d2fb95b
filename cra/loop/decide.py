"""The loop's decision engine: pure code, no I/O.

After every step and every cycle the loop hands :func:`decide` a :class:`Progress`
snapshot and its :class:`Limits`; the answer says whether to go on, pivot to the next
repository, or stop, and why. Checks run in a fixed order so that a success on the last
allowed cycle counts as a success: stop requests first (someone asked), then targets met,
then failures, then budgets, then widening (`widen_every`), then convergence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cra.loop.limits import Limits, Target


class StopReason(enum.Enum):
    """Why a loop ended; each has the exit code `cra loop start` ends with."""

    TARGET_MET = "target_met"
    CONVERGED = "converged"
    MAX_CYCLES = "max_cycles"
    MAX_HOURS = "max_hours"
    CYCLE_TIMEOUT = "cycle_timeout"
    TOKEN_BUDGET = "token_budget"  # noqa: S105 - a stop reason, not a secret
    FAILED_CYCLES = "failed_cycles"
    KILL_SWITCH = "kill_switch"
    STOP_REQUESTED = "stop_requested"
    INTERRUPTED = "interrupted"

    @property
    def exit_code(self) -> int:
        """0 done, 1 failed, 2 a limit was hit, 3 kill switch, 130 a signal."""
        return _EXIT_CODES[self]


_EXIT_CODES: dict[StopReason, int] = {
    StopReason.TARGET_MET: 0,
    StopReason.CONVERGED: 0,
    StopReason.STOP_REQUESTED: 0,
    StopReason.FAILED_CYCLES: 1,
    StopReason.MAX_CYCLES: 2,
    StopReason.MAX_HOURS: 2,
    StopReason.CYCLE_TIMEOUT: 2,
    StopReason.TOKEN_BUDGET: 2,
    StopReason.KILL_SWITCH: 3,
    StopReason.INTERRUPTED: 130,
}


STOP_REASON_HELP: dict[StopReason, str] = {
    StopReason.TARGET_MET: "every [loop] target met",
    StopReason.CONVERGED: "no promotion for `patience` cycles, the queue empty or past `min_hours`",
    StopReason.STOP_REQUESTED: "cra loop stop",
    StopReason.FAILED_CYCLES: "`max_failed_cycles` cycles failed in a row",
    StopReason.MAX_CYCLES: "`max_cycles` cycles ran",
    StopReason.MAX_HOURS: "`max_hours` of runtime used",
    StopReason.CYCLE_TIMEOUT: "a cycle ran over `cycle_timeout_s` (its step is cut)",
    StopReason.TOKEN_BUDGET: "a cycle used over `tokens_per_cycle` LLM tokens",
    StopReason.KILL_SWITCH: "a STOP file in the workspace",
    StopReason.INTERRUPTED: "SIGINT or SIGTERM",
}
"""What makes the loop stop for each reason (the help of `cra loop start`)."""


class Action(enum.Enum):
    """What the loop does next."""

    CONTINUE = "continue"
    PIVOT = "pivot"
    STOP = "stop"


@dataclass(frozen=True)
class Progress:
    """Where a loop stands, as the engine needs it.

    `cycles_done` counts finished cycles; `stale_cycles` the finished cycles since the
    last promotion through the gate (or pivot); `failed_in_a_row` the consecutive failed
    cycles; `cycle_runtime_s`/`cycle_tokens` what the current cycle has used;
    `metrics` the active versions' eval metrics (`adapter.metric` -> value);
    `cycles_on_repo` the finished cycles since the loop last turned to a repository.
    """

    cycles_done: int = 0
    runtime_s: float = 0.0
    cycle_runtime_s: float = 0.0
    cycle_tokens: int = 0
    stale_cycles: int = 0
    failed_in_a_row: int = 0
    cycle_cut: bool = False
    metrics: tuple[tuple[str, float], ...] = ()
    queue: tuple[str, ...] = ()
    kill_switch: bool = False
    stop_requested: bool = False
    interrupted: bool = False
    cycles_on_repo: int = 0


@dataclass(frozen=True)
class Decision:
    """The engine's answer: the action, the stop reason (for STOP) and why, in words."""

    action: Action
    reason: StopReason | None = None
    detail: str = ""

    @property
    def exit_code(self) -> int | None:
        """The exit code of a stop; None otherwise."""
        return self.reason.exit_code if self.reason else None


def _stop(reason: StopReason, detail: str) -> Decision:
    return Decision(Action.STOP, reason, detail)


def targets_met(targets: tuple[Target, ...], metrics: dict[str, float]) -> bool:
    """Whether every target holds (False without targets: nothing to meet)."""
    return bool(targets) and all(t.met(metrics.get(t.key)) for t in targets)


def _interrupts(p: Progress) -> Decision | None:
    if p.interrupted:
        return _stop(StopReason.INTERRUPTED, "a signal (SIGINT/SIGTERM) stopped the loop")
    if p.kill_switch:
        return _stop(StopReason.KILL_SWITCH, "the STOP file is in the workspace")
    if p.stop_requested:
        return _stop(StopReason.STOP_REQUESTED, "`cra loop stop` asked the loop to stop")
    return None


def _budgets(limits: Limits, p: Progress) -> Decision | None:
    if p.cycle_cut:
        return _stop(
            StopReason.CYCLE_TIMEOUT, f"a cycle ran over {limits.cycle_timeout_s:g} s and was cut"
        )
    if p.cycle_tokens > limits.tokens_per_cycle:
        return _stop(
            StopReason.TOKEN_BUDGET,
            f"the cycle used {p.cycle_tokens} LLM tokens, over {limits.tokens_per_cycle}",
        )
    if p.runtime_s >= limits.max_hours * 3600:
        return _stop(
            StopReason.MAX_HOURS, f"ran {p.runtime_s / 3600:.3f} h of {limits.max_hours:g}"
        )
    return None


def decide(limits: Limits, p: Progress, *, between_cycles: bool) -> Decision:
    """Go on, pivot or stop. Between steps (`between_cycles` False) only interrupts and
    budgets can stop the loop; between cycles every rule applies, in the module's order."""
    found = _interrupts(p)
    if found is None and between_cycles and targets_met(limits.targets, dict(p.metrics)):
        met = ", ".join(t.text for t in limits.targets)
        found = _stop(StopReason.TARGET_MET, f"every target is met: {met}")
    if found is None and between_cycles and p.failed_in_a_row >= limits.max_failed_cycles:
        found = _stop(StopReason.FAILED_CYCLES, f"{p.failed_in_a_row} cycles failed in a row")
    found = found or _budgets(limits, p)
    if found is not None or not between_cycles:
        return found or Decision(Action.CONTINUE)
    if p.cycles_done >= limits.max_cycles:
        return _stop(StopReason.MAX_CYCLES, f"ran {p.cycles_done} of {limits.max_cycles} cycles")
    if limits.widen_every and p.cycles_on_repo >= limits.widen_every and p.queue:
        why = f"{p.cycles_on_repo} cycle(s) on this repository (widen_every {limits.widen_every})"
        return Decision(Action.PIVOT, None, f"{why}: pivoting to {p.queue[0]}")
    if p.stale_cycles >= limits.patience:
        why = f"no promotion beyond the noise floor in {p.stale_cycles} cycles"
        if p.runtime_s < limits.min_hours * 3600 and p.queue:
            return Decision(Action.PIVOT, None, f"{why}: pivoting to {p.queue[0]}")
        return _stop(StopReason.CONVERGED, why)
    return Decision(Action.CONTINUE)
