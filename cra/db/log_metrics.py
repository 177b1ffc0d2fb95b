"""Analysis reads over `raw.db` in aggregate: per-stage metrics over time and per
repository, and failure breakdowns.

Stage metrics:
- scope = file recall of the plans; precision = symbol recall; planning = alignment
  (an invalid plan scores 0 on each);
- execute = the share of graded patches (`outcomes` of kind `patch_grade`) that resolve
  their task (FAIL_TO_PASS and PASS_TO_PASS pass); grades the infrastructure spoiled
  are left out (see :data:`PATCH_JUDGED`).

Part of the one read interface :class:`cra.db.logs.LogAnalysis`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cra.db.log_calls import iso_filter, parse_adapter
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

_INVALID_PLANS = "SELECT error, count(*) FROM plans WHERE valid = 0 GROUP BY error"
_LLM_ERRORS = "SELECT error, count(*) FROM llm_calls WHERE error IS NOT NULL GROUP BY error"
_OUTCOME_VERDICTS = "SELECT kind, verdict, count(*) FROM outcomes GROUP BY kind, verdict"
_FUNNEL_DROPS = (
    "SELECT stage, coalesce(reason, '?'), count(*) FROM commits WHERE verdict = 'dropped' "
    "GROUP BY stage, reason"
)


def _reason(text: str | None) -> str:
    """Group error texts by their first clause, so counts add up per kind of failure."""
    if not text:
        return "?"
    head = text.strip().splitlines()[0]
    for sep in (": ", " at line "):
        head = head.split(sep, 1)[0]
    return head[:80]


class MetricReads:
    """The aggregate reads of :class:`cra.db.logs.LogAnalysis`, which holds `conn`."""

    conn: sqlite3.Connection

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
        params = {"repo": repo, "since": iso_filter(since), "adapter": name, "version": version}
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
