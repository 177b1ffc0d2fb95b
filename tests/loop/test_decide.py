"""The decision engine: every stop reason, its exit code, the order of the checks and
the pivot before min_hours."""

from __future__ import annotations

import pytest

from cra.loop.decide import Action, Progress, StopReason, decide
from tests.loop.helpers import limits

GO = Progress(cycles_done=1, runtime_s=10.0)


def test_exit_codes_per_stop_reason() -> None:
    """Each stop reason has its documented exit code: 0 done, 1 failed, 2 limit, 3, 130."""
    codes = {r: r.exit_code for r in StopReason}
    assert codes == {
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


@pytest.mark.parametrize(
    ("progress", "changed", "reason"),
    [
        (
            Progress(cycles_done=1, metrics=(("scope.recall", 0.9),)),
            {"targets": ("scope.recall>=0.8",)},
            StopReason.TARGET_MET,
        ),
        (Progress(cycles_done=5), {}, StopReason.MAX_CYCLES),
        (Progress(cycles_done=2, stale_cycles=2), {}, StopReason.CONVERGED),
        (Progress(cycles_done=1, cycle_cut=True), {}, StopReason.CYCLE_TIMEOUT),
        (Progress(cycles_done=1, runtime_s=3600.0), {}, StopReason.MAX_HOURS),
        (Progress(cycles_done=1, cycle_tokens=1001), {}, StopReason.TOKEN_BUDGET),
        (Progress(cycles_done=2, failed_in_a_row=2), {}, StopReason.FAILED_CYCLES),
        (Progress(cycles_done=1, kill_switch=True), {}, StopReason.KILL_SWITCH),
        (Progress(cycles_done=1, stop_requested=True), {}, StopReason.STOP_REQUESTED),
        (Progress(cycles_done=1, interrupted=True), {}, StopReason.INTERRUPTED),
    ],
)
def test_every_stop_reason_between_cycles(progress, changed, reason) -> None:
    """Between cycles, each condition stops the loop with its reason and exit code."""
    decision = decide(limits(**changed), progress, between_cycles=True)
    assert decision.action is Action.STOP
    assert decision.reason is reason
    assert decision.exit_code == reason.exit_code
    assert decision.detail


def test_nothing_reached_goes_on() -> None:
    """With no limit reached, the loop continues, without a reason or exit code."""
    decision = decide(limits(), GO, between_cycles=True)
    assert (decision.action, decision.reason, decision.exit_code) == (Action.CONTINUE, None, None)


def test_target_met_on_the_last_cycle_is_a_success() -> None:
    """Targets met on the last allowed cycle end as target_met (exit 0), not max_cycles."""
    progress = Progress(cycles_done=5, metrics=(("scope.recall", 0.81),))
    decision = decide(limits(targets=("scope.recall>=0.8",)), progress, between_cycles=True)
    assert decision.reason is StopReason.TARGET_MET and decision.exit_code == 0


def test_a_target_not_measured_or_below_is_not_met() -> None:
    """A target without a measurement, or below its value, does not stop the loop."""
    lim = limits(targets=("scope.recall>=0.8", "planning.alignment>=0.5"))
    partly = Progress(cycles_done=1, metrics=(("scope.recall", 0.9),))
    assert decide(lim, partly, between_cycles=True).action is Action.CONTINUE
    lower = limits(targets=("scope.loss<=0.1",))
    high = Progress(cycles_done=1, metrics=(("scope.loss", 0.3),))
    assert decide(lower, high, between_cycles=True).action is Action.CONTINUE


def test_convergence_before_min_hours_pivots_to_the_queue() -> None:
    """No improvement for `patience` cycles before min_hours pivots to the next repository."""
    progress = Progress(cycles_done=2, stale_cycles=2, runtime_s=60.0, queue=("attrs", "rich"))
    decision = decide(limits(min_hours=0.5), progress, between_cycles=True)
    assert decision.action is Action.PIVOT and "attrs" in decision.detail


def test_convergence_with_an_empty_queue_or_after_min_hours_ends() -> None:
    """With an empty queue, or after min_hours, convergence ends the loop (exit 0)."""
    empty = Progress(cycles_done=2, stale_cycles=2, runtime_s=60.0)
    late = Progress(cycles_done=2, stale_cycles=2, runtime_s=1900.0, queue=("attrs",))
    for progress in (empty, late):
        decision = decide(limits(min_hours=0.5), progress, between_cycles=True)
        assert decision.reason is StopReason.CONVERGED


def test_between_steps_only_interrupts_and_budgets_stop() -> None:
    """Between steps, max_cycles and convergence wait for the cycle's end; budgets do not."""
    cycle_end_rules = Progress(cycles_done=9, stale_cycles=9, failed_in_a_row=9)
    assert decide(limits(), cycle_end_rules, between_cycles=False).action is Action.CONTINUE
    over = Progress(cycle_tokens=5000)
    assert decide(limits(), over, between_cycles=False).reason is StopReason.TOKEN_BUDGET
    stop = Progress(stop_requested=True)
    assert decide(limits(), stop, between_cycles=False).reason is StopReason.STOP_REQUESTED


def test_a_signal_outranks_every_other_reason() -> None:
    """An interrupt is reported as such even when a limit is also reached."""
    both = Progress(cycles_done=5, interrupted=True, kill_switch=True, cycle_tokens=10**6)
    assert decide(limits(), both, between_cycles=True).reason is StopReason.INTERRUPTED


def test_widen_every_pivots_after_that_many_cycles_on_a_repository() -> None:
    """With widen_every N the loop pivots after N cycles on one repository while the queue
    has one, before convergence; with an empty queue or 0 it does not widen."""
    lim = limits(widen_every=1, patience=5)
    once = Progress(cycles_done=1, cycles_on_repo=1, queue=("rich",))
    decision = decide(lim, once, between_cycles=True)
    assert decision.action is Action.PIVOT
    assert decision.detail == "1 cycle(s) on this repository (widen_every 1): pivoting to rich"
    assert decide(lim, Progress(cycles_done=1, cycles_on_repo=1), between_cycles=True).action is (
        Action.CONTINUE
    )
    off = limits(widen_every=0, patience=5)
    assert decide(off, once, between_cycles=True).action is Action.CONTINUE
    early = Progress(cycles_done=1, cycles_on_repo=1, queue=("rich",))
    assert decide(limits(widen_every=2, patience=5), early, between_cycles=True).action is (
        Action.CONTINUE
    )
