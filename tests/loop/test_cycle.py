"""The cycle, in process: steps recorded with outcome and counts, skipped steps with
their reason, a cycle over its time cut and recorded, failures counted, stop and resume."""

from __future__ import annotations

import json
import threading
import time
from contextlib import closing

from cra.db.llm_calls import record_call
from cra.fsutil import now_iso
from cra.loop.decide import StopReason
from cra.loop.report import loop_status
from cra.loop.run import resume_loop, start_loop
from cra.loop.steps import DEFAULT_STEPS, FunctionStep, StepContext, StepResult
from tests.helpers import run_cra
from tests.loop.helpers import failing_step, recorded, slow_step, token_step


def test_a_cycle_over_its_time_is_cut_at_a_safe_point(workspace) -> None:
    """A step still working when the cycle's time is up is cut, recorded, and the loop
    ends with cycle_timeout (exit 2)."""
    steps = (slow_step("quick", 1), slow_step("long", 200))
    started = time.monotonic()
    outcome = start_loop(workspace, {"cycle_timeout_s": 1.0}, steps=steps)
    assert time.monotonic() - started < 6
    assert outcome.reason is StopReason.CYCLE_TIMEOUT and outcome.exit_code == 2
    rec = recorded(workspace)
    assert [(s.step, s.status) for s in rec.steps] == [("quick", "done"), ("long", "cut")]
    assert rec.steps[1].reason == "cut: cycle_timeout" and rec.steps[1].ended_at
    assert int((workspace.root / "long.units").read_text()) < 200
    assert [c.status for c in rec.cycles] == ["cut"]
    assert rec.run.stop_reason == "cycle_timeout" and rec.run.exit_code == 2


def test_a_blocking_step_is_cut_too(workspace) -> None:
    """A step blocked in one long call (no safe point) is still cut within seconds."""
    steps = (slow_step("blocked", 1, unit_s=60.0),)
    started = time.monotonic()
    outcome = start_loop(workspace, {"cycle_timeout_s": 1.0}, steps=steps)
    assert time.monotonic() - started < 6
    assert outcome.reason is StopReason.CYCLE_TIMEOUT
    assert not (workspace.root / "blocked.units").exists()


def test_failed_cycles_end_the_loop(workspace) -> None:
    """A step that breaks fails its cycle (later steps not run); max_failed_cycles such
    cycles in a row end the loop with failed_cycles (exit 1)."""
    steps = (failing_step("broken"), slow_step("after", 1))
    outcome = start_loop(workspace, {"max_failed_cycles": 2}, steps=steps)
    assert outcome.reason is StopReason.FAILED_CYCLES and outcome.exit_code == 1
    rec = recorded(workspace)
    assert [c.status for c in rec.cycles] == ["failed", "failed"]
    assert {(s.step, s.status) for s in rec.steps} == {("broken", "failed")}
    assert rec.steps[0].reason == "RuntimeError: broken on purpose"


def test_default_steps_without_data_are_skipped_with_reasons(workspace) -> None:
    """On an empty workspace every step is skipped with its reason, not failed; no
    promotion for `patience` cycles with an empty queue converges (exit 0), and the report
    is written as Markdown and JSON."""
    outcome = start_loop(workspace, {"patience": 2})
    assert outcome.reason is StopReason.CONVERGED and outcome.exit_code == 0
    rec = recorded(workspace)
    assert [c.status for c in rec.cycles] == ["done", "done"]
    first = [s for s in rec.steps if s.cycle == 1]
    assert [s.step for s in first] == [s.name for s in DEFAULT_STEPS]
    assert all(s.status == "skipped" and s.reason for s in first)
    assert "no repository to mine" in first[0].reason
    data = json.loads(outcome.report_json.read_text())
    assert data["stop_reason"] == "converged" and len(data["cycles"]) == 2
    assert "Stopped: **converged**" in outcome.report_md.read_text()


def test_stop_then_resume_continues_at_the_cut_step(workspace) -> None:
    """The STOP file ends the loop mid-step (exit 3); resume re-runs that step in the same
    cycle, keeps the finished ones and carries the runtime over."""
    steps = (slow_step("first", 1), slow_step("second", 40), slow_step("third", 1))
    timer = threading.Timer(0.8, workspace.stop_path.touch)
    timer.start()
    outcome = start_loop(workspace, {"max_cycles": 1}, steps=steps)
    timer.join()
    assert outcome.reason is StopReason.KILL_SWITCH and outcome.exit_code == 3
    before = recorded(workspace)
    assert [(s.step, s.status) for s in before.steps] == [("first", "done"), ("second", "cut")]
    workspace.stop_path.unlink()
    resumed = resume_loop(workspace, steps=steps)
    assert resumed.reason is StopReason.MAX_CYCLES and resumed.run_id == outcome.run_id
    after = recorded(workspace)
    assert [(s.step, s.status) for s in after.steps] == [
        ("first", "done"),
        ("second", "cut"),
        ("second", "done"),
        ("third", "done"),
    ]
    assert [c.number for c in after.cycles] == [1]
    assert after.run.runtime_s >= before.run.runtime_s > 0.5
    status = loop_status(workspace)
    assert status is not None and status.run.stop_reason == "max_cycles"
    assert {b.name for b in status.budgets} >= {"cycles", "hours", "cycle_tokens"}


def test_the_token_budget_counts_llm_calls_of_the_cycle(workspace) -> None:
    """LLM tokens recorded in llm_calls during a cycle count against tokens_per_cycle: over
    it, the loop stops before the next step with token_budget (exit 2)."""
    steps = (token_step("teacher", 600), token_step("again", 600), slow_step("never", 1))
    outcome = start_loop(workspace, {"tokens_per_cycle": 1000}, steps=steps)
    assert outcome.reason is StopReason.TOKEN_BUDGET and outcome.exit_code == 2
    rec = recorded(workspace)
    assert [s.step for s in rec.steps] == ["teacher", "again"]
    assert rec.cycles[0].tokens == 1200
    result = run_cra(workspace, "loop", "status")
    assert "loop run 1 (ended: token_budget), cycle 1" in result.stdout
    assert "cycle_tokens: 1200 used of 1000, 0 left" in result.stdout


def test_tokens_over_budget_cut_a_running_step(workspace) -> None:
    """Tokens going over the cycle's budget while a step runs cut that step within
    seconds; the cycle is closed as stopped, and the run ends with token_budget."""
    steps = (token_step("teacher", 600), slow_step("after", 1), slow_step("long", 200))

    def spend() -> None:
        with closing(workspace.raw_db()) as conn:
            record_call(
                conn,
                {
                    "stage": "plan",
                    "model": "t",
                    "messages": "[]",
                    "prompt_tokens": 900,
                    "created_at": now_iso(),
                },
            )

    timer = threading.Timer(1.0, spend)
    timer.start()
    started = time.monotonic()
    outcome = start_loop(workspace, {"tokens_per_cycle": 1000}, steps=steps)
    timer.join()
    assert time.monotonic() - started < 8
    assert outcome.reason is StopReason.TOKEN_BUDGET
    rec = recorded(workspace)
    assert [(s.step, s.status) for s in rec.steps][-1] == ("long", "cut")
    assert rec.steps[-1].reason == "cut: token_budget"
    assert [c.status for c in rec.cycles] == ["stopped"] and rec.cycles[0].tokens == 1500


def test_training_without_a_base_model_is_skipped_with_the_reason(workspace) -> None:
    """The train step for a LoRA adapter with no [model] base is skipped (not failed),
    saying so; the cycle still counts as done."""

    def planned(_ctx: StepContext) -> StepResult:
        return StepResult("done", None, {}, {"dataset": "ds-1", "adapters": "scope"})

    train = next(s for s in DEFAULT_STEPS if s.name == "train")
    start_loop(workspace, {"max_cycles": 1}, steps=(FunctionStep("plan", planned), train))
    rec = recorded(workspace)
    assert [(s.step, s.status) for s in rec.steps] == [("plan", "done"), ("train", "skipped")]
    assert "no base model configured" in (rec.steps[1].reason or "")
    assert [c.status for c in rec.cycles] == ["done"]
