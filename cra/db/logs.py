"""LogAnalysisAPI: the one read interface over `raw.db`.

Everything the harness recorded, cross-referenced by `task_id`: tasks with their commits
and gold, LLM calls by stage/model/adapter/time, retrieval decisions, plans and their
scores, test outcomes, per-stage metrics over time and per repository, and failure
breakdowns. Plain dataclasses out; every SQL statement of the read side lives in this
module. The existing indexes (`plans_task`, `llm_calls_stage`, `outcomes_task`, the
primary keys the joins follow) cover these queries.

Stage metrics:
- scope = file recall of the plans; precision = symbol recall; planning = alignment
  (an invalid plan scores 0 on each);
- execute = the share of graded patches (`outcomes` of kind `patch_grade`) that resolve
  their task (FAIL_TO_PASS and PASS_TO_PASS pass); grades the infrastructure spoiled
  are left out (see :data:`PATCH_JUDGED`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cra.errors import UsageError

STAGES: dict[str, str] = {
    "scope": "file_recall",
    "precision": "symbol_recall",
    "planning": "alignment",
    "execute": "fail_to_pass_rate",
}
"""The stages the logs measure, and the metric each is measured by."""

PATCH_PASSED = ("resolved",)
"""Verdicts of a graded patch that count as its FAIL_TO_PASS tests passing."""

PATCH_JUDGED = ("resolved", "unresolved", "patch_failed")
"""Verdicts that judge the patch; the others (env_failed, timeout, sandbox_failed,
tests_error) are failures of the infrastructure and never count against it."""

BUCKETS = {"day": "%Y-%m-%d", "week": "%Y-W%W", "month": "%Y-%m"}


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
class LLMCall:
    """One logged model request and what came back."""

    id: int
    task_id: str | None
    run_id: int | None
    stage: str
    model: str
    adapter: str | None
    adapter_version: int | None
    temperature: float | None
    messages: list[dict[str, Any]]
    response: str | None
    error: str | None
    latency_ms: float | None
    created_at: str


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


@dataclass(frozen=True)
class Point:
    """A metric's mean over `n` observations in one time bucket (or one repository)."""

    key: str
    n: int
    mean: float


@dataclass(frozen=True)
class StageMetrics:
    """A stage's metric: overall, per time bucket (oldest first), and per repository."""

    stage: str
    metric: str
    n: int
    mean: float | None
    series: tuple[Point, ...]
    by_repo: tuple[Point, ...]

    @property
    def trend(self) -> float | None:
        """Least-squares slope of the bucket means per bucket (None with < 2 buckets)."""
        if len(self.series) < 2:
            return None
        xs = list(range(len(self.series)))
        ys = [p.mean for p in self.series]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "stage": self.stage,
            "metric": self.metric,
            "n": self.n,
            "mean": self.mean,
            "trend": self.trend,
            "series": [p.__dict__ for p in self.series],
            "by_repo": [p.__dict__ for p in self.by_repo],
        }


@dataclass(frozen=True)
class FailureBreakdown:
    """Where things went wrong: counts per reason."""

    invalid_plans: dict[str, int] = field(default_factory=dict)
    llm_errors: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    funnel_drops: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskView:
    """Everything recorded about one task, cross-referenced by its id."""

    task: TaskRecord
    retrievals: tuple[Retrieval, ...]
    plans: tuple[ScoredPlan, ...]
    llm_calls: tuple[LLMCall, ...]
    outcomes: tuple[Outcome, ...]
    test_runs: tuple[TestRun, ...]


def parse_adapter(spec: str) -> tuple[str, int | None]:
    """`NAME` or `NAME@vN` → (name, version or None); raise UsageError otherwise."""
    name, _, version = spec.partition("@")
    if not name:
        raise UsageError(f"invalid adapter {spec!r}", hint="write NAME or NAME@vN")
    if not version:
        return name, None
    if not (version.startswith("v") and version[1:].isdigit() and int(version[1:]) >= 1):
        raise UsageError(
            f"invalid adapter version in {spec!r}", hint="write NAME@vN, e.g. scope@v2"
        )
    return name, int(version[1:])


# --- SQL, in one place --------------------------------------------------------------

_TASKS = """
SELECT t.task_id, r.name AS repo, coalesce(r.domain, r.name) AS domain, c.sha, c.parent_sha,
       c.authored_at, c.authored_ts, t.task_text, c.subject, t.gold_files, t.gold_symbols,
       c.files_tests
FROM tasks t JOIN commits c ON c.id = t.commit_id JOIN repos r ON r.id = t.repo_id
WHERE (:repo IS NULL OR r.name = :repo)
ORDER BY c.authored_ts, t.task_id
"""

_LLM_CALLS = """
SELECT id, task_id, run_id, stage, model, adapter, adapter_version, temperature, messages,
       response, error, latency_ms, created_at
FROM llm_calls
WHERE (:stage IS NULL OR stage = :stage) AND (:model IS NULL OR model = :model)
  AND (:adapter IS NULL OR adapter = :adapter)
  AND (:version IS NULL OR adapter_version = :version)
  AND (:task_id IS NULL OR task_id = :task_id)
  AND (:since IS NULL OR created_at >= :since) AND (:until IS NULL OR created_at < :until)
ORDER BY id
"""

_CALL_MESSAGES = "SELECT messages FROM llm_calls WHERE id = ?"

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

# One value per observation: (bucket source time, repo, value), filtered alike.
_PLAN_METRIC = """
SELECT p.created_at AS at, r.name AS repo, s.{column} AS value
FROM plans p JOIN plan_scores s ON s.plan_id = p.id
JOIN tasks t ON t.task_id = p.task_id JOIN repos r ON r.id = t.repo_id
LEFT JOIN llm_calls c ON c.id = p.llm_call_id
WHERE (:repo IS NULL OR r.name = :repo) AND (:since IS NULL OR p.created_at >= :since)
  AND (:planner IS NULL OR p.planner = :planner)
  AND (:adapter IS NULL OR c.adapter = :adapter)
  AND (:version IS NULL OR c.adapter_version = :version)
"""

_EXECUTE_METRIC = """
SELECT o.created_at AS at, r.name AS repo,
       CASE WHEN o.verdict IN ({passed}) THEN 1.0 ELSE 0.0 END AS value
FROM outcomes o JOIN tasks t ON t.task_id = o.task_id JOIN repos r ON r.id = t.repo_id
WHERE o.kind = 'patch_grade' AND o.verdict IN ({judged})
  AND (:repo IS NULL OR r.name = :repo) AND (:since IS NULL OR o.created_at >= :since)
  AND (:adapter IS NULL OR EXISTS (
        SELECT 1 FROM llm_calls c WHERE c.task_id = o.task_id AND c.run_id IS o.run_id
        AND c.adapter = :adapter AND (:version IS NULL OR c.adapter_version = :version)))
"""

_COUNTS = {
    table: f"SELECT count(*) FROM {table}"
    for table in ("repos", "commits", "tasks", "llm_calls", "retrievals", "plans", "outcomes")
}

_INVALID_PLANS = "SELECT error, count(*) FROM plans WHERE valid = 0 GROUP BY error"
_LLM_ERRORS = "SELECT error, count(*) FROM llm_calls WHERE error IS NOT NULL GROUP BY error"
_OUTCOME_VERDICTS = "SELECT kind, verdict, count(*) FROM outcomes GROUP BY kind, verdict"
_FUNNEL_DROPS = (
    "SELECT stage, coalesce(reason, '?'), count(*) FROM commits WHERE verdict = 'dropped' "
    "GROUP BY stage, reason"
)
_VERIFIED = (
    "SELECT DISTINCT task_id FROM outcomes WHERE kind = 'validation' AND verdict = 'verified'"
)


def _iso(when: datetime | str | None) -> str | None:
    if when is None or isinstance(when, str):
        return when
    return when.isoformat()


def _reason(text: str | None) -> str:
    """Group error texts by their first clause, so counts add up per kind of failure."""
    if not text:
        return "?"
    head = text.strip().splitlines()[0]
    for sep in (": ", " at line "):
        head = head.split(sep, 1)[0]
    return head[:80]


class LogAnalysis:
    """Read-only queries over a `raw.db` connection (the caller owns the connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

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

    def llm_calls(
        self,
        *,
        stage: str | None = None,
        model: str | None = None,
        adapter: str | None = None,
        task_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[LLMCall]:
        """Logged model calls, filtered by stage, model, adapter (`NAME` or `NAME@vN`),
        task and creation time (`since` inclusive, `until` exclusive)."""
        name, version = parse_adapter(adapter) if adapter else (None, None)
        params = {
            "stage": stage,
            "model": model,
            "adapter": name,
            "version": version,
            "task_id": task_id,
            "since": _iso(since),
            "until": _iso(until),
        }
        return [
            LLMCall(
                r["id"],
                r["task_id"],
                r["run_id"],
                r["stage"],
                r["model"],
                r["adapter"],
                r["adapter_version"],
                r["temperature"],
                json.loads(r["messages"]),
                r["response"],
                r["error"],
                r["latency_ms"],
                r["created_at"],
            )
            for r in self.conn.execute(_LLM_CALLS, params)
        ]

    def call_messages(self, call_id: int) -> list[dict[str, Any]] | None:
        """The messages a logged call sent (None when there is no such call)."""
        text = self.call_messages_text(call_id)
        return json.loads(text) if text is not None else None

    def call_messages_text(self, call_id: int) -> str | None:
        """The messages a logged call sent, as the JSON text recorded."""
        row = self.conn.execute(_CALL_MESSAGES, (call_id,)).fetchone()
        return row[0] if row else None

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
            "since": _iso(since),
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

    def test_runs(self, task_id: str) -> list[TestRun]:
        """Every test outcome recorded for a task."""
        return [
            TestRun(
                r["task_id"], r["phase"], r["attempt"], r["test_id"], r["outcome"], r["created_at"]
            )
            for r in self.conn.execute(_TEST_RUNS, {"task_id": task_id})
        ]

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

    def stage_metrics(
        self,
        stage: str,
        *,
        repo: str | None = None,
        adapter: str | None = None,
        since: datetime | str | None = None,
        planner: str | None = None,
        bucket: str = "day",
    ) -> StageMetrics:
        """The stage's metric over time (per `bucket` of the run time) and per repository.

        `adapter` (`NAME` or `NAME@vN`) keeps only the work done through that adapter:
        plans whose model call used it, or patches graded in a run whose call used it.
        """
        if stage not in STAGES:
            raise UsageError(f"unknown stage {stage!r}", hint=f"choose one of {', '.join(STAGES)}")
        if bucket not in BUCKETS:
            raise UsageError(f"unknown bucket {bucket!r}", hint=f"one of {', '.join(BUCKETS)}")
        name, version = parse_adapter(adapter) if adapter else (None, None)
        params = {"repo": repo, "since": _iso(since), "adapter": name, "version": version}
        if stage == "execute":
            passed = ", ".join(f"'{v}'" for v in PATCH_PASSED)
            judged = ", ".join(f"'{v}'" for v in PATCH_JUDGED)
            query = _EXECUTE_METRIC.format(passed=passed, judged=judged)
        else:
            column = {"scope": "file_recall", "precision": "symbol_recall"}.get(stage, "alignment")
            query = _PLAN_METRIC.format(column=column)
            params["planner"] = planner
        fmt = BUCKETS[bucket]
        wrapped = (
            f"SELECT strftime('{fmt}', at) AS bucket, repo, count(*) AS n, avg(value) AS mean "
            f"FROM ({query}) GROUP BY bucket, repo"
        )
        per_bucket: dict[str, list[float]] = {}
        per_repo: dict[str, list[float]] = {}
        for r in self.conn.execute(wrapped, params):
            for acc, key in ((per_bucket, r["bucket"] or "?"), (per_repo, r["repo"])):
                entry = acc.setdefault(key, [0.0, 0.0])
                entry[0] += r["n"]
                entry[1] += r["n"] * r["mean"]
        n = int(sum(v[0] for v in per_repo.values()))
        total = sum(v[1] for v in per_repo.values())

        def points(acc: dict[str, list[float]]) -> tuple[Point, ...]:
            return tuple(Point(k, int(v[0]), v[1] / v[0]) for k, v in sorted(acc.items()))

        return StageMetrics(
            stage, STAGES[stage], n, total / n if n else None, points(per_bucket), points(per_repo)
        )

    def failures(self) -> FailureBreakdown:
        """Invalid plans and failed model calls by reason, outcome verdicts by kind, and
        the mining funnel's drops by stage and reason."""
        invalid: Counter[str] = Counter()
        for error, n in self.conn.execute(_INVALID_PLANS):
            invalid[_reason(error)] += n
        llm: Counter[str] = Counter()
        for error, n in self.conn.execute(_LLM_ERRORS):
            llm[_reason(error)] += n
        outcomes: dict[str, dict[str, int]] = {}
        for kind, verdict, n in self.conn.execute(_OUTCOME_VERDICTS):
            outcomes.setdefault(kind, {})[verdict] = n
        funnel: dict[str, dict[str, int]] = {}
        for stage, reason, n in self.conn.execute(_FUNNEL_DROPS):
            funnel.setdefault(stage, {})[reason] = n
        return FailureBreakdown(dict(invalid), dict(llm), outcomes, funnel)
