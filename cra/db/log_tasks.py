"""Analysis reads of the tasks in `raw.db` and what the harness recorded for them:
commits and gold, retrieval decisions, plans and their scores, test outcomes.

Part of the one read interface :class:`cra.db.logs.LogAnalysis`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cra.db.log_calls import iso_filter, parse_adapter


@dataclass(frozen=True)
class TaskRecord:
    """A task with its repository, commit and gold (what the commit really changed)."""

    task_id: str
    repo: str
    domain: str
    sha: str
    parent_sha: str | None
    authored_at: str
    authored_ts: int
    task_text: str
    subject: str
    gold_files: tuple[dict[str, Any], ...]
    gold_symbols: tuple[dict[str, Any], ...]
    files_tests: tuple[str, ...]


@dataclass(frozen=True)
class Retrieval:
    """What retrieval picked for a task."""

    task_id: str
    run_id: int | None
    method: str
    query: str
    results: list[dict[str, Any]]
    created_at: str


@dataclass(frozen=True)
class ScoredPlan:
    """A plan, its alignment scores, and the model call that produced it (if any)."""

    id: int
    task_id: str
    run_id: int | None
    planner: str
    temperature: float | None
    valid: bool
    plan: str | None
    raw: str | None
    error: str | None
    llm_call_id: int | None
    model: str | None
    adapter: str | None
    adapter_version: int | None
    file_recall: float
    file_precision: float
    symbol_recall: float
    symbol_precision: float
    order_score: float | None
    alignment: float
    created_at: str

    def scores(self) -> dict[str, float | None]:
        """The scores as a JSON-ready mapping."""
        return {
            "alignment": self.alignment,
            "file_recall": self.file_recall,
            "file_precision": self.file_precision,
            "symbol_recall": self.symbol_recall,
            "symbol_precision": self.symbol_precision,
            "order": self.order_score,
        }


@dataclass(frozen=True)
class Outcome:
    """A verdict on a task: validation of the gold commit, or the grade of a patch."""

    id: int
    task_id: str
    run_id: int | None
    kind: str
    verdict: str
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    created_at: str


@dataclass(frozen=True)
class TestRun:
    """One test's outcome in one run of the tests."""

    task_id: str
    phase: str
    attempt: int
    test_id: str
    outcome: str
    created_at: str


_TASKS = """
SELECT t.task_id, r.name AS repo, coalesce(r.domain, r.name) AS domain, c.sha, c.parent_sha,
       c.authored_at, c.authored_ts, t.task_text, c.subject, t.gold_files, t.gold_symbols,
       c.files_tests
FROM tasks t JOIN commits c ON c.id = t.commit_id JOIN repos r ON r.id = t.repo_id
WHERE (:repo IS NULL OR r.name = :repo)
ORDER BY c.authored_ts, t.task_id
"""

_RETRIEVALS = """
SELECT task_id, run_id, method, query, results, created_at FROM retrievals
WHERE (:task_id IS NULL OR task_id = :task_id) ORDER BY id
"""

_PLANS = """
SELECT p.id, p.task_id, p.run_id, p.planner, p.temperature, p.valid, p.plan, p.raw, p.error,
       p.llm_call_id, c.model, c.adapter, c.adapter_version,
       s.file_recall, s.file_precision, s.symbol_recall, s.symbol_precision, s.order_score,
       s.alignment, p.created_at
FROM plans p JOIN plan_scores s ON s.plan_id = p.id
LEFT JOIN llm_calls c ON c.id = p.llm_call_id
WHERE (:task_id IS NULL OR p.task_id = :task_id)
  AND (:planner IS NULL OR p.planner = :planner)
  AND (:adapter IS NULL OR c.adapter = :adapter)
  AND (:version IS NULL OR c.adapter_version = :version)
  AND (:since IS NULL OR p.created_at >= :since)
ORDER BY p.task_id, p.id
"""

_OUTCOMES = """
SELECT id, task_id, run_id, kind, verdict, fail_to_pass, pass_to_pass, created_at
FROM outcomes WHERE (:kind IS NULL OR kind = :kind) AND (:task_id IS NULL OR task_id = :task_id)
ORDER BY id
"""

_TEST_RUNS = """
SELECT task_id, phase, attempt, test_id, outcome, created_at FROM test_runs
WHERE task_id = :task_id ORDER BY id
"""

_COUNTS = {
    table: f"SELECT count(*) FROM {table}"
    for table in ("repos", "commits", "tasks", "llm_calls", "retrievals", "plans", "outcomes")
}

_VERIFIED = (
    "SELECT DISTINCT task_id FROM outcomes WHERE kind = 'validation' AND verdict = 'verified'"
)
_VALIDATED = "SELECT DISTINCT task_id FROM outcomes WHERE kind = 'validation'"


class TaskReads:
    """The task reads of :class:`cra.db.logs.LogAnalysis`, which holds `conn`."""

    conn: sqlite3.Connection

    def counts(self) -> dict[str, int]:
        """Rows per table: repos, commits, tasks, llm_calls, retrievals, plans, outcomes."""
        return {t: int(self.conn.execute(q).fetchone()[0]) for t, q in _COUNTS.items()}

    def tasks(self, repo: str | None = None) -> list[TaskRecord]:
        """Every task (or `repo`'s), oldest commit first."""
        return [
            TaskRecord(
                r["task_id"],
                r["repo"],
                r["domain"],
                r["sha"],
                r["parent_sha"],
                r["authored_at"],
                int(r["authored_ts"]),
                r["task_text"],
                r["subject"],
                tuple(json.loads(r["gold_files"])),
                tuple(json.loads(r["gold_symbols"])),
                tuple(json.loads(r["files_tests"])),
            )
            for r in self.conn.execute(_TASKS, {"repo": repo})
        ]

    def retrievals(self, task_id: str | None = None) -> list[Retrieval]:
        """Retrieval decisions (of one task, or all), in the order they were made."""
        return [
            Retrieval(
                r["task_id"],
                r["run_id"],
                r["method"],
                r["query"],
                json.loads(r["results"]),
                r["created_at"],
            )
            for r in self.conn.execute(_RETRIEVALS, {"task_id": task_id})
        ]

    def iter_plans(
        self,
        *,
        task_id: str | None = None,
        planner: str | None = None,
        adapter: str | None = None,
        since: datetime | str | None = None,
    ) -> Iterator[ScoredPlan]:
        """Scored plans grouped by task, streamed (a log may hold millions)."""
        name, version = parse_adapter(adapter) if adapter else (None, None)
        params = {
            "task_id": task_id,
            "planner": planner,
            "adapter": name,
            "version": version,
            "since": iso_filter(since),
        }
        for r in self.conn.execute(_PLANS, params):
            yield ScoredPlan(
                r["id"],
                r["task_id"],
                r["run_id"],
                r["planner"],
                r["temperature"],
                bool(r["valid"]),
                r["plan"],
                r["raw"],
                r["error"],
                r["llm_call_id"],
                r["model"],
                r["adapter"],
                r["adapter_version"],
                r["file_recall"],
                r["file_precision"],
                r["symbol_recall"],
                r["symbol_precision"],
                r["order_score"],
                r["alignment"],
                r["created_at"],
            )

    def plans(self, **filters: Any) -> list[ScoredPlan]:
        """Scored plans (see :meth:`iter_plans` for the filters)."""
        return list(self.iter_plans(**filters))

    def outcomes(self, *, kind: str | None = None, task_id: str | None = None) -> list[Outcome]:
        """Validation verdicts and patch grades."""
        return [
            Outcome(
                r["id"],
                r["task_id"],
                r["run_id"],
                r["kind"],
                r["verdict"],
                tuple(json.loads(r["fail_to_pass"])),
                tuple(json.loads(r["pass_to_pass"])),
                r["created_at"],
            )
            for r in self.conn.execute(_OUTCOMES, {"kind": kind, "task_id": task_id})
        ]

    def verified_tasks(self) -> set[str]:
        """Tasks whose validation found stable FAIL_TO_PASS tests."""
        return {r[0] for r in self.conn.execute(_VERIFIED)}

    def validated_tasks(self) -> set[str]:
        """Tasks validation has run on, whatever it found."""
        return {r[0] for r in self.conn.execute(_VALIDATED)}

    def test_runs(self, task_id: str) -> list[TestRun]:
        """Every test outcome recorded for a task."""
        return [
            TestRun(
                r["task_id"], r["phase"], r["attempt"], r["test_id"], r["outcome"], r["created_at"]
            )
            for r in self.conn.execute(_TEST_RUNS, {"task_id": task_id})
        ]
