"""LogAnalysis: the one read interface over `raw.db`.

Everything the harness recorded, cross-referenced by `task_id`: tasks with their commits
and gold, LLM calls by stage/model/adapter/time, retrieval decisions, plans and their
scores, test outcomes, per-stage metrics over time and per repository, and failure
breakdowns. Plain dataclasses out; every SQL statement of the read side lives in this
module's parts: :mod:`cra.db.log_tasks` (tasks, retrievals, plans, outcomes, test runs),
:mod:`cra.db.log_calls` (model calls and adapters) and :mod:`cra.db.log_metrics`
(stage metrics and failures). The existing indexes (`plans_task`, `llm_calls_stage`,
`outcomes_task`, the primary keys the joins follow) cover these queries.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cra.db.log_calls import CallReads, LLMCall
from cra.db.log_metrics import MetricReads
from cra.db.log_tasks import Outcome, Retrieval, ScoredPlan, TaskReads, TaskRecord, TestRun


@dataclass(frozen=True)
class TaskView:
    """Everything recorded about one task, cross-referenced by its id."""

    task: TaskRecord
    retrievals: tuple[Retrieval, ...]
    plans: tuple[ScoredPlan, ...]
    llm_calls: tuple[LLMCall, ...]
    outcomes: tuple[Outcome, ...]
    test_runs: tuple[TestRun, ...]


class LogAnalysis(TaskReads, CallReads, MetricReads):
    """Read-only queries over a `raw.db` connection (the caller owns the connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def task(self, task_id: str) -> TaskView | None:
        """Everything recorded about `task_id`, or None when there is no such task."""
        record = next((t for t in self.tasks() if t.task_id == task_id), None)
        if record is None:
            return None
        return TaskView(
            record,
            tuple(self.retrievals(task_id)),
            tuple(self.iter_plans(task_id=task_id)),
            tuple(self.llm_calls(task_id=task_id)),
            tuple(self.outcomes(task_id=task_id)),
            tuple(self.test_runs(task_id)),
        )
