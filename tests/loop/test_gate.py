"""Improvement is a promotion through the registry's gate: the loop's promote step, its
patience and its report, on real adapters with planted eval results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cra.adapters import lifecycle
from cra.loop.decide import StopReason
from cra.loop.run import start_loop
from cra.loop.steps import (
    DEFAULT_STEPS,
    FunctionStep,
    StepContext,
    StepResult,
    check_step,
    promote_step,
)
from cra.workspace import Workspace
from tests.adapters.helpers import candidate, plant_live_calls, planted_eval
from tests.helpers import model_workspace
from tests.loop.helpers import active_versions, candidate_step, recorded, registry_events


@pytest.fixture
def ws(workspace: Workspace, tiny_model_dir: Path) -> Workspace:
    """A workspace whose base model is the tiny model, with a dataset."""
    return model_workspace(workspace, tiny_model_dir)


def test_only_promotions_through_the_gate_count_as_improvement(ws, tmp_path) -> None:
    """Cycle 1's better candidate is promoted; the regressing ones after it are rejected
    with the gate's reason, so after `patience` such cycles the loop converges, and the
    report names the best version and which cycle helped."""
    better, worse = [1.0, 0.0] * 8, [0.0, 0.0] * 8
    promote, check = (s for s in DEFAULT_STEPS if s.name in ("promote", "check"))
    steps = (candidate_step([better, worse, worse], tmp_path), promote, check)
    outcome = start_loop(ws, {"patience": 2, "max_cycles": 5}, steps=steps)
    assert outcome.reason is StopReason.CONVERGED
    rec = recorded(ws)
    assert [c.promoted for c in rec.cycles] == [1, 0, 0]
    rejected = next(s for s in rec.steps if s.step == "promote" and s.cycle == 2)
    assert rejected.counts == {"promoted": 0, "rejected": 1}
    assert "regresses against scope@v1" in (rejected.reason or "")
    report = json.loads(outcome.report_json.read_text())
    assert report["best_versions"]["scope"]["version"] == "scope@v1"
    assert [c["helped"] for c in report["cycles"]] == [True, False, False]
    assert "| 1 | - | done | 0 | promoted scope@v1 | yes |" in outcome.report_md.read_text()


def test_a_promote_step_run_again_after_its_moves_counts_them_as_it_did(ws, tmp_path):
    """A promote step run again after promoting or rejecting (as resume does after a crash
    before the step's end) counts the candidate as before, with no second registry move."""
    results: list[StepResult] = []

    def twice(ctx: StepContext) -> StepResult:
        results.extend([promote_step(ctx), promote_step(ctx)])
        return results[-1]

    better, worse = [1.0, 0.0] * 8, [0.0, 0.0] * 8
    steps = (candidate_step([better, better, worse], tmp_path), FunctionStep("promote", twice))
    start_loop(ws, {"patience": 5, "max_cycles": 3}, steps=steps)
    promotes = [(s.status, s.counts) for s in recorded(ws).steps if s.step == "promote"]
    assert promotes == [("done", {"promoted": 1, "rejected": 0})] * 2 + [
        ("done", {"promoted": 0, "rejected": 1})
    ]
    assert results[0::2] == results[1::2]
    assert "scope@v2 promoted, but not an improvement" in (results[3].reason or "")
    assert "scope@v3 regresses against scope@v2" in (results[5].reason or "")
    assert active_versions(ws) == {"scope": 2}
    moves = [e.event for e in registry_events(ws, "scope")]
    assert (moves.count("promoted"), moves.count("rejected")) == (2, 1)


def test_a_check_step_run_again_after_its_rollback_reports_it_as_it_did(ws, tmp_path):
    """A check step run again after its automatic rollback (as resume does after a crash
    before the step's end) reports that rollback as before, with no second one."""
    results: list[StepResult] = []

    def twice(ctx: StepContext) -> StepResult:
        results.extend([check_step(ctx), check_step(ctx)])
        return results[-1]

    for seed, recall in ((1, [1.0, 0.0, 1.0, 1.0]), (2, [1.0] * 4)):
        planted_eval(ws, candidate(ws, tmp_path, seed), recall)
        lifecycle.promote(ws, f"scope@v{seed}")
    plant_live_calls(ws, 2, ["src/tally/stats.py"] * 6 + ["README.md"] * 12)
    start_loop(ws, {"max_cycles": 1}, steps=(FunctionStep("check", twice),))
    assert results[0] == results[1]
    assert results[1].counts == {"checked": 1, "rolled_back": 1}
    assert recorded(ws).cycles[0].summary["rolled_back"] == ["scope"]
    assert active_versions(ws) == {"scope": 1}
    assert [e.event for e in registry_events(ws, "scope")].count("rolled_back") == 1
