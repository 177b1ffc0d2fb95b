"""`plans` and `plan_scores`: every plan a planner made for a task, and its score."""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass


@dataclass(frozen=True)
class PlanRow:
    """A plan as recorded (`plan` is its JSON, None when the planner's answer was invalid)."""

    task_id: str
    run_id: int
    planner: str
    temperature: float | None
    llm_call_id: int | None
    valid: int
    plan: str | None
    raw: str | None
    error: str | None


@dataclass(frozen=True)
class ScoreRow:
    """A plan's score as recorded (`weights` and `details` are JSON)."""

    file_precision: float
    file_recall: float
    file_f1: float
    symbol_precision: float
    symbol_recall: float
    symbol_f1: float
    order_score: float | None
    alignment: float
    weights: str
    details: str


@dataclass(frozen=True)
class PlannerAlignment:
    """A planner's plans on one repository: how many, their mean alignment, invalid ones."""

    repo: str
    planner: str
    plans: int
    mean_alignment: float | None
    invalid: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready row."""
        return {
            "repo": self.repo,
            "planner": self.planner,
            "plans": self.plans,
            "mean_alignment": self.mean_alignment,
            "invalid": self.invalid,
        }


def record_plan(conn: sqlite3.Connection, plan: PlanRow, score: ScoreRow, now: str) -> None:
    """Write a plan and its score; the caller holds the transaction."""
    cursor = conn.execute(
        "INSERT INTO plans (task_id, run_id, planner, temperature, llm_call_id, valid, "
        "plan, raw, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*astuple(plan), now),
    )
    conn.execute(
        "INSERT INTO plan_scores (plan_id, file_precision, file_recall, file_f1, "
        "symbol_precision, symbol_recall, symbol_f1, order_score, alignment, weights, "
        "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (cursor.lastrowid, *astuple(score), now),
    )


def has_plans(conn: sqlite3.Connection, task_id: str, planner: str) -> bool:
    """Whether `planner` has a recorded plan for the task."""
    sql = "SELECT 1 FROM plans WHERE task_id = ? AND planner = ? LIMIT 1"
    return conn.execute(sql, (task_id, planner)).fetchone() is not None


def alignments(conn: sqlite3.Connection, planner: str) -> list[float]:
    """The alignment of every plan `planner` made, lowest first."""
    rows = conn.execute(
        "SELECT s.alignment FROM plan_scores s JOIN plans p ON p.id = s.plan_id "
        "WHERE p.planner = ? ORDER BY s.alignment",
        (planner,),
    )
    return [row[0] for row in rows]


def planner_alignments(conn: sqlite3.Connection, repo: str | None) -> list[PlannerAlignment]:
    """Per repository (or of `repo`) and planner: plans, mean alignment, invalid plans."""
    rows = conn.execute(
        "SELECT r.name, p.planner, count(*), avg(s.alignment), sum(1 - p.valid) "
        "FROM plans p JOIN plan_scores s ON s.plan_id = p.id JOIN tasks t USING (task_id) "
        "JOIN repos r ON r.id = t.repo_id WHERE (? IS NULL OR r.name = ?) "
        "GROUP BY r.name, p.planner ORDER BY r.name, p.planner",
        (repo, repo),
    ).fetchall()
    return [PlannerAlignment(*row) for row in rows]


@dataclass(frozen=True)
class TaskPlan:
    """A plan made for a task and its score (None where no score was recorded)."""

    id: int
    run_id: int | None
    planner: str
    temperature: float | None
    valid: bool
    error: str | None
    alignment: float | None
    file_f1: float | None
    symbol_f1: float | None
    order_score: float | None
    created_at: str


def task_plans(conn: sqlite3.Connection, task_id: str) -> list[TaskPlan]:
    """Every plan made for the task with its score, oldest first."""
    rows = conn.execute(
        "SELECT p.id, p.run_id, p.planner, p.temperature, p.valid, p.error, s.alignment, "
        "s.file_f1, s.symbol_f1, s.order_score, p.created_at FROM plans p "
        "LEFT JOIN plan_scores s ON s.plan_id = p.id WHERE p.task_id = ? ORDER BY p.id",
        (task_id,),
    ).fetchall()
    return [
        TaskPlan(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10])
        for r in rows
    ]
