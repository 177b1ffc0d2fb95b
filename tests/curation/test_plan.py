"""Planning arithmetic: the holdout boundary, weakness (gap and decline), and ranking
by weakness weighed by data volume."""

from __future__ import annotations

import pytest

from cra.curation.plan import PlanSettings, holdout_boundary, plan_from
from cra.curation.rows import Candidates, CurateOptions, Row
from cra.db.log_metrics import Point, StageMetrics


def test_holdout_boundary_splits_by_time() -> None:
    """The holdout boundary is the date holding the newest share, never splitting one date."""
    times = list(range(100, 110))
    assert holdout_boundary(times, 0.2) == 108
    assert holdout_boundary([5, 5, 5], 0.2) is None  # one date cannot be split
    assert holdout_boundary([1, 1, 1, 2], 0.1) == 2  # the newest date at least
    assert holdout_boundary([1, 2], 0.9) == 2


def metrics(stage: str, series: list[tuple[int, float]]) -> StageMetrics:
    points = tuple(Point(f"2024-0{i + 1}", n, v) for i, (n, v) in enumerate(series))
    n = sum(p.n for p in points)
    mean = sum(p.n * p.mean for p in points) / n
    return StageMetrics(stage, "m", n, mean, points, (Point("r", n, mean),))


def rows(adapter: str, count: int, step: int = 1) -> list[Row]:
    return [
        Row(adapter, "sft", f"{adapter}@{i}", 1000 + i * step, "d", "gold", {}, "x")
        for i in range(count)
    ]


def test_weakness_gap_decline_and_volume_rank_the_adapters() -> None:
    """Adapters rank by weakness (gap plus decline) weighted by the volume of training rows."""
    settings = PlanSettings(
        eval_share=0.2,
        replay_share=0.15,
        domain_cap=0.2,
        min_examples=10,
        targets={"scope": 0.9, "precision": 0.8, "planning": 0.8, "execute": 0.6},
        options=CurateOptions(),
    )
    stages = {
        "scope": metrics("scope", [(10, 0.8), (10, 0.8)]),  # gap 0.1, flat
        "precision": metrics("precision", [(10, 0.9), (10, 0.5)]),  # gap 0.1, falling 0.4
        "planning": metrics("planning", [(10, 0.2), (10, 0.2)]),  # gap 0.6, little data
        "execute": StageMetrics("execute", "m", 0, None, (), ()),
    }
    candidates = Candidates(
        rows("scope", 100) + rows("precision", 100) + rows("planning", 15, step=7)
    )
    plan = plan_from(candidates, stages, {"tasks": 215}, settings)
    by_name = {a["name"]: a for a in plan["adapters"]}
    assert by_name["scope"]["weakness"] == pytest.approx(0.1)
    assert by_name["precision"]["weakness"] == pytest.approx(0.1 + 0.5 * 0.4 - 0.0, abs=1e-4)
    assert by_name["planning"]["weakness"] == pytest.approx(0.6)
    # planning has fewer train rows than the 40 that give full weight
    train = by_name["planning"]["techniques"][0]["estimated_examples"]["train"]
    assert 10 <= train < 40
    assert by_name["planning"]["priority"] == pytest.approx(0.6 * train / 40, abs=1e-4)
    order = [a["name"] for a in plan["adapters"]]
    assert order[:3] == ["precision", "planning", "scope"]
    assert set(order[3:]) == {"execute-code", "task-analysis", "scope-ranker"}
    assert not by_name["execute-code"]["train"]
    assert "not enough data: 0 train rows" in by_name["execute-code"]["reason"]
    assert plan["holdout"]["eval_tasks"] + plan["holdout"]["train_tasks"] == 215
