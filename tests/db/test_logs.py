"""LogAnalysisAPI reads what the writers recorded, cross-referenced by task id."""

from __future__ import annotations

from contextlib import closing

import pytest

from cra.db.log_calls import parse_adapter
from cra.db.logs import LogAnalysis
from cra.errors import UsageError
from cra.fixtures.logs import build_synthetic_log
from cra.workspace import Workspace


@pytest.fixture
def logged(workspace: Workspace):
    with closing(workspace.raw_db()) as conn:
        log = build_synthetic_log(conn, tasks_per_repo=3)
        yield LogAnalysis(conn), log


def test_counts_and_tasks_in_time_order(logged) -> None:
    """Log reads count tasks, plans and model calls, and list tasks oldest first, per repo."""
    logs, log = logged
    counts = logs.counts()
    assert counts["tasks"] == len(log.tasks) == 18
    assert counts["plans"] == log.plans == 18 * 4  # baseline + three temperatures
    assert counts["llm_calls"] == log.llm_calls == 18 * 4  # three plans + one analysis
    tasks = logs.tasks()
    assert [t.task_id for t in tasks] == log.tasks
    assert [t.authored_ts for t in tasks] == sorted(t.authored_ts for t in tasks)
    assert {t.domain for t in tasks} == {"web", "cli", "data", "parsing", "testing", "ml"}
    assert all(t.gold_files and t.gold_symbols for t in tasks)
    assert [t.task_id for t in logs.tasks(repo="alpha")] == [
        t for t in log.tasks if log.repos[t] == "alpha"
    ]


# Each stage and the plan score its metrics average.
STAGE_FIELDS = (("scope", "file_recall"), ("precision", "symbol_recall"), ("planning", "alignment"))


def test_stage_metrics_match_the_scores(logged) -> None:
    """Stage metrics average plan scores overall and per repo; execute leaves env failures out."""
    logs, _ = logged
    plans = logs.plans()
    for stage, field in STAGE_FIELDS:
        metrics = logs.stage_metrics(stage)
        assert metrics.n == len(plans)
        assert metrics.mean == pytest.approx(sum(getattr(p, field) for p in plans) / len(plans))
        assert sum(p.n for p in metrics.by_repo) == len(plans)
        alpha = [p for p in plans if p.task_id.startswith("alpha@")]
        point = next(p for p in metrics.by_repo if p.key == "alpha")
        assert point.mean == pytest.approx(sum(getattr(p, field) for p in alpha) / len(alpha))
    graded = [o for o in logs.outcomes(kind="patch_grade") if o.verdict != "env_failed"]
    execute = logs.stage_metrics("execute")
    assert execute.n == len(graded) > 0  # infrastructure failures are left out
    resolved = sum(o.verdict == "resolved" for o in graded)
    assert execute.mean == pytest.approx(resolved / len(graded))


def test_stage_metrics_filter_by_adapter_and_planner(logged) -> None:
    """Stage metrics and model calls filter by adapter version, planner, stage and since date."""
    logs, _ = logged
    conn = logs.conn
    # Mark one task's calls as served by scope@v2: only its plans count for that adapter.
    task_id = logs.tasks()[0].task_id
    conn.execute(
        "UPDATE llm_calls SET adapter = 'planning', adapter_version = 2 WHERE task_id = ? "
        "AND stage = 'plan'",
        (task_id,),
    )
    three = logs.stage_metrics("planning", adapter="planning@v2")
    assert three.n == 3
    assert logs.stage_metrics("planning", adapter="planning@v1").n == 0
    assert logs.stage_metrics("planning", adapter="planning").n == 3
    assert logs.stage_metrics("planning", planner="baseline").n == 18
    assert len(logs.llm_calls(adapter="planning@v2")) == 3
    assert len(logs.llm_calls(stage="task-analysis")) == 18
    assert logs.stage_metrics("planning", since="2999-01-01").n == 0


def test_task_view_cross_references(logged) -> None:
    """A task view links its plans, retrieval and model calls; an unknown task gives None."""
    logs, log = logged
    view = logs.task(log.tasks[0])
    assert view is not None
    assert len(view.plans) == 4 and len(view.retrievals) == 1
    assert {c.stage for c in view.llm_calls} == {"plan", "task-analysis"}
    llm = [p for p in view.plans if p.planner == "llm"]
    assert {p.llm_call_id for p in llm} <= {c.id for c in view.llm_calls}
    assert logs.task("nope@000") is None


def test_failures_group_reasons(logged) -> None:
    """Failures count every invalid plan and group outcomes of validation or grading."""
    logs, _ = logged
    failures = logs.failures()
    invalid = sum(1 for p in logs.plans() if not p.valid)
    assert sum(failures.invalid_plans.values()) == invalid
    assert set(failures.outcomes) <= {"validation", "patch_grade"}


def test_bad_arguments() -> None:
    """An adapter name parses with an optional @vN version; malformed names are a usage error."""
    assert parse_adapter("scope@v3") == ("scope", 3)
    assert parse_adapter("scope") == ("scope", None)
    for bad in ("@v1", "scope@3", "scope@v0", "scope@vx"):
        with pytest.raises(UsageError):
            parse_adapter(bad)


def test_unknown_stage(logged) -> None:
    """Asking for metrics of an unknown stage is a usage error."""
    logs, _ = logged
    with pytest.raises(UsageError, match="unknown stage"):
        logs.stage_metrics("coding")
