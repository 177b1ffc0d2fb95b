"""The harness and the retrieval/planning sections of the report, read from `raw.db`."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import datetime

from cra.db.log_tasks import ScoredPlan, TaskRecord
from cra.db.logs import LogAnalysis
from cra.db.outcomes import VerdictCount, latest_verdict_counts
from cra.db.runs import list_runs
from cra.harness.funnel import RepoFunnel, funnel
from cra.harness.stages import STAGES
from cra.report.model import Chart, Section, Series, Table

RECALL_KS = (1, 3, 5, 10, 20)
TOP_REASONS = 3


def harness_section(conn: sqlite3.Connection, analysis: LogAnalysis) -> Section:
    """Funnel per repository, verified yield per era, verdicts, seconds per validation."""
    funnels = funnel(conn)
    charts: list[Chart] = []
    tables: list[Table] = []
    if funnels:
        charts.append(_funnel_chart(funnels))
        tables.append(_reasons_table(funnels))
    tasks = analysis.tasks()
    if tasks:
        charts.append(_yield_chart(tasks, analysis.verified_tasks()))
    verdicts = latest_verdict_counts(conn, None)
    if verdicts:
        by_verdict: dict[str, dict[str, int]] = defaultdict(dict)
        for v in verdicts:
            by_verdict[v.verdict][v.repo] = v.count
        series = tuple(
            Series(verdict, tuple(repos), tuple(repos.values()))
            for verdict, repos in sorted(by_verdict.items())
        )
        charts.append(
            Chart("verdicts", "Latest validation verdict per repository", series, "", "tasks", True)
        )
        tables.append(_validation_speed(conn, verdicts_per_repo(verdicts)))
    return Section(
        "harness",
        "Harness",
        "cra harness run (mines, plans and validates the packed repositories)",
        tuple(charts),
        tuple(tables),
    )


def verdicts_per_repo(verdicts: list[VerdictCount]) -> dict[str, int]:
    """Validated tasks per repository, from the verdict counts."""
    totals: dict[str, int] = defaultdict(int)
    for v in verdicts:
        totals[v.repo] += v.count
    return dict(totals)


def _funnel_chart(funnels: list[RepoFunnel]) -> Chart:
    repos = tuple(f.repo for f in funnels)
    series = [
        Series(stage, repos, tuple(f.dropped.get(stage, 0) for f in funnels)) for stage in STAGES
    ]
    series.append(Series("qualified", repos, tuple(f.qualified for f in funnels)))
    return Chart("funnel", "Mining funnel: commits per stage", tuple(series), "", "commits", True)


def _reasons_table(funnels: list[RepoFunnel]) -> Table:
    rows = []
    for f in funnels:
        for stage, reasons in f.reasons.items():
            for reason, count in list(reasons.items())[:TOP_REASONS]:
                rows.append((f.repo, stage, reason, count))
    return Table(
        "Top reasons a stage dropped commits",
        ("repository", "stage", "reason", "commits"),
        tuple(rows),
    )


def era_of(authored_at: str) -> str:
    """The era of a commit: the year it was authored."""
    return authored_at[:4] or "?"


def _yield_chart(tasks: list[TaskRecord], verified: set[str]) -> Chart:
    cells: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for task in tasks:
        cell = cells[task.repo][era_of(task.authored_at)]
        cell[0] += 1
        cell[1] += task.task_id in verified
    series = tuple(
        Series(
            repo,
            tuple(sorted(eras)),
            tuple(round(100 * eras[e][1] / eras[e][0], 1) for e in sorted(eras)),
            text=tuple(f"{eras[e][1]} of {eras[e][0]} tasks" for e in sorted(eras)),
        )
        for repo, eras in sorted(cells.items())
    )
    return Chart("yield", "Verified yield per repository and era (% of tasks)", series, "era", "%")


def run_seconds(start: str, end: str | None) -> float | None:
    """Seconds between two ISO times (None while the run has no end)."""
    if end is None:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _validation_speed(conn: sqlite3.Connection, validated: dict[str, int]) -> Table:
    spent: dict[str, float] = defaultdict(float)
    for run in list_runs(conn, "validate"):
        seconds = run_seconds(run.started_at, run.finished_at)
        if seconds is not None and run.repo is not None:
            spent[run.repo] += seconds
    rows = tuple(
        (repo, n, round(spent[repo], 1), round(spent[repo] / n, 2) if repo in spent else None)
        for repo, n in sorted(validated.items())
    )
    return Table(
        "Seconds per validated commit (validate runs' wall time / validated tasks)",
        ("repository", "validated", "seconds", "seconds per commit"),
        rows,
    )


def planning_section(analysis: LogAnalysis) -> Section:
    """Retrieval recall@k per method; plan alignment per planner and adapter over time."""
    charts: list[Chart] = []
    gold = {t.task_id: {str(f.get("path")) for f in t.gold_files} for t in analysis.tasks()}
    recall = _recall_chart(analysis, gold)
    if recall is not None:
        charts.append(recall)
    plans = analysis.plans()
    if plans:
        charts.append(_alignment_chart(plans))
    return Section(
        "planning",
        "Retrieval and planning",
        "cra harness run (retrieves and plans every task)",
        tuple(charts),
    )


def _recall_chart(analysis: LogAnalysis, gold: dict[str, set[str]]) -> Chart | None:
    hits: dict[str, list[list[float]]] = defaultdict(list)
    for r in analysis.retrievals():
        want = gold.get(r.task_id)
        if not want:
            continue
        files = [str(h.get("file")) for h in r.results]
        hits[r.method].append([len(want & set(files[:k])) / len(want) for k in RECALL_KS])
    if not hits:
        return None
    series = tuple(
        Series(
            method,
            RECALL_KS,
            tuple(round(sum(row[i] for row in rows) / len(rows), 4) for i in range(len(RECALL_KS))),
            "line",
        )
        for method, rows in sorted(hits.items())
    )
    return Chart("recall", "Retrieval: file recall@k per method", series, "k", "recall")


def planner_label(plan: ScoredPlan) -> str:
    """A plan's planner, with the adapter version its model call used."""
    if plan.adapter:
        return f"{plan.planner} · {plan.adapter}@v{plan.adapter_version}"
    return f"{plan.planner} · {plan.model}" if plan.model else plan.planner


def _alignment_chart(plans: list[ScoredPlan]) -> Chart:
    days: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for plan in plans:
        days[planner_label(plan)][plan.created_at[:10]].append(plan.alignment)
    series = tuple(
        Series(
            label,
            tuple(sorted(per_day)),
            tuple(round(sum(v) / len(v), 4) for _, v in sorted(per_day.items())),
            "line",
            tuple(f"{len(v)} plans" for _, v in sorted(per_day.items())),
        )
        for label, per_day in sorted(days.items())
    )
    return Chart(
        "alignment",
        "Plan alignment per planner and adapter version (daily mean)",
        series,
        "day",
        "alignment",
    )
