"""`cra train-plan`: read the logs, rank stages by weakness, and write a training plan.

Weakness of a stage = its gap to the target (`[curate] target_*`) plus half of its
decline over time (a falling metric is weaker than a flat one at the same level).
Adapters are ranked by priority = weakness x min(1, train rows / (4 x min_examples)),
so volume of usable data counts too. An adapter is trained only when its data is
enough (`[curate] min_examples` train rows and at least one eval row after the
chronological split). Stages with no logged metric (task-analysis) rank after the
measured ones. The scope ranker's metric is its evaluated recall@5 against `[curate]
target_scope_ranker` (see :func:`cra.curation.ranker.ranker_metric`). When nothing can
be trained the
plan is not written: :class:`NotEnoughData` says why for each adapter.

The plan (JSON, `format_version` 1) names the adapters to train, the technique and
data sources of each with estimated example counts, the holdout boundary (every eval
task is authored at or after it, every train task before), the replay share and the
domain cap. A Markdown summary is written next to it.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cra.config import CurateSettings
from cra.curation.candidates import build_candidates
from cra.curation.dedup import effective_cap
from cra.curation.ranker import ranker_metric
from cra.curation.rows import ADAPTERS, STAGE_OF, Candidates, CurateOptions
from cra.db.log_metrics import StageMetrics
from cra.db.logs import LogAnalysis
from cra.errors import CraError, UsageError
from cra.fsutil import atomic_write_text, now_iso
from cra.workspace import Workspace

PLAN_FORMAT_VERSION = 1
PLAN_KIND = "cra-training-plan"
TECHNIQUE_SOURCES = {
    ("scope", "sft"): "gold: files each commit changed",
    ("precision", "sft"): "gold: definitions each commit's diff touches",
    ("planning", "sft"): "gold: plans derived from each commit's diff; teacher plans",
    ("planning", "dpo"): "harness: plans of one task at several temperatures",
    ("execute-code", "sft"): "gold: each verified commit's source diff",
    ("task-analysis", "sft"): "teacher: logged task analyses of teacher models",
    ("scope-ranker", "ranker"): "history: files each commit past the message and size "
    "stages changed (tested or not), BM25 hard negatives",
}


class EmptyDatabase(CraError, LookupError):
    """`raw.db` holds nothing to learn from."""


class NotEnoughData(CraError, ValueError):
    """No adapter has enough data to train; `reasons` says why for each, and `details`
    lists each adapter's train rows against the `min_examples` it needs, one a line."""

    def __init__(
        self, reasons: dict[str, str], *, min_examples: int, details: tuple[str, ...] = ()
    ) -> None:
        super().__init__(
            "not enough data to train any adapter: each needs [curate] min_examples = "
            f"{min_examples} train rows (set in cra.toml) and one eval row",
            hint="run the harness on more commits or repositories (`cra harness mine`, "
            "`cra harness run`, `cra harness validate`), or lower [curate] min_examples "
            "in cra.toml; then plan again",
            details=details,
        )
        self.reasons = reasons
        self.min_examples = min_examples


def shortfall(entry: dict[str, Any], min_examples: int) -> str:
    """One line for an adapter the plan cannot train: per technique, the train rows it has
    against the `min_examples` it needs, and the commonest reasons tasks gave no row."""
    parts = []
    for t in entry["techniques"]:
        unit = "pairs" if t["technique"] == "dpo" else "rows"
        ex = t["estimated_examples"]
        text = f"{t['technique']} {ex['train']} train {unit} (needs {min_examples})"
        if ex["train"] >= min_examples and ex["eval"] == 0:
            text += ", no eval rows after the holdout boundary"
        skipped = Counter(t["skipped"])
        if skipped and ex["train"] < min_examples:
            top = ", ".join(f"{k} ×{v}" for k, v in skipped.most_common(2))
            text += f"; tasks without rows: {top}"
        parts.append(text)
    return f"{entry['name']:<14} " + " | ".join(parts)


@dataclass(frozen=True)
class PlanSettings:
    """What planning needs from `[curate]`."""

    eval_share: float
    replay_share: float
    domain_cap: float
    min_examples: int
    targets: dict[str, float]
    options: CurateOptions

    @classmethod
    def from_settings(cls, curate: CurateSettings) -> PlanSettings:
        """The plan's settings from `[curate]`."""
        return cls(
            eval_share=curate.eval_share,
            replay_share=curate.replay_share,
            domain_cap=curate.domain_cap,
            min_examples=curate.min_examples,
            targets={
                "scope": curate.target_scope,
                "precision": curate.target_precision,
                "planning": curate.target_planning,
                "execute": curate.target_execute,
                "ranker": curate.target_scope_ranker,
            },
            options=curate_options(curate),
        )


def curate_options(curate: CurateSettings) -> CurateOptions:
    """Row-building options from `[curate]`."""
    return CurateOptions(
        teacher_models=tuple(curate.teacher_models),
        teacher_min_alignment=curate.teacher_min_alignment,
        dpo_min_margin=curate.dpo_min_margin,
        execute_requires_verified=curate.execute_requires_verified,
        max_prompt_chars=curate.max_prompt_chars,
    )


def holdout_boundary(times: list[int], eval_share: float) -> int | None:
    """The authored time at which the newest `eval_share` of tasks start (None when
    there are too few distinct times to have both a train and an eval side)."""
    distinct = sorted(set(times))
    if len(distinct) < 2:
        return None
    ordered = sorted(times)
    cut = ordered[min(len(ordered) - 1, int(len(ordered) * (1 - eval_share)))]
    if cut == distinct[0]:
        cut = distinct[1]
    return cut


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _weakness(metrics: StageMetrics, target: float) -> dict[str, Any]:
    if metrics.mean is None:
        return {"value": None, "target": target, "gap": None, "trend": None, "weakness": None}
    gap = max(0.0, target - metrics.mean)
    decline = 0.0
    if len(metrics.series) >= 2:
        half = len(metrics.series) // 2
        early = metrics.series[:half]
        late = metrics.series[half:]
        mean = lambda pts: sum(p.mean * p.n for p in pts) / sum(p.n for p in pts)  # noqa: E731
        decline = max(0.0, mean(early) - mean(late))
    return {
        "value": round(metrics.mean, 4),
        "target": target,
        "gap": round(gap, 4),
        "trend": None if metrics.trend is None else round(metrics.trend, 4),
        "decline": round(decline, 4),
        "weakness": round(gap + 0.5 * decline, 4),
        "observations": metrics.n,
        "by_repo": {p.key: round(p.mean, 4) for p in metrics.by_repo},
    }


def build_plan(workspace: Workspace, settings: PlanSettings | None = None) -> dict[str, Any]:
    """Analyse `raw.db` and return the plan; raise EmptyDatabase or NotEnoughData."""
    settings = settings or PlanSettings.from_settings(workspace.config.settings.curate)
    groups = [(a, t) for a, techniques in ADAPTERS.items() for t in techniques]
    with closing(workspace.raw_db()) as conn, closing(workspace.curated_db()) as curated:
        logs = LogAnalysis(conn)
        counts = logs.counts()
        if counts["tasks"] == 0:
            raise EmptyDatabase(
                f"{workspace.raw_db_path} holds no tasks: there is nothing to plan from",
                hint="mine and run the harness first: `cra harness mine --repo NAME`, "
                "`cra harness run --repo NAME`",
            )
        stages = {s: logs.stage_metrics(s) for s in ("scope", "precision", "planning", "execute")}
        stages["ranker"] = ranker_metric(conn, workspace.root, stages["scope"])
        candidates = build_candidates(
            logs, groups, settings.options, repos_dir=workspace.repos_dir, curated=curated
        )
        failures = logs.failures()
    return plan_from(candidates, stages, counts, settings, failures.invalid_plans)


def _technique_entry(
    adapter: str, technique: str, candidates: Candidates, boundary: int | None, min_examples: int
) -> dict[str, Any]:
    """Whether the plan trains `adapter` with `technique`, from what, and why."""
    rows = [r for r in candidates.rows if r.group == (adapter, technique)]
    train = sum(1 for r in rows if boundary is not None and r.authored_ts < boundary)
    held = sum(1 for r in rows if boundary is not None and r.authored_ts >= boundary)
    sources = Counter(r.source for r in rows)
    skipped = candidates.skipped.get(f"{adapter}/{technique}", Counter())
    if boundary is None:
        why = "not enough data: fewer than two distinct commit dates to split by time"
    elif train < min_examples:
        unit = "pairs" if technique == "dpo" else "rows"
        why = (
            f"not enough data: {train} train {unit} before the holdout boundary, "
            f"need {min_examples} ([curate] min_examples)"
        )
    elif held == 0:
        why = "not enough data: no eval rows after the holdout boundary"
    else:
        why = None
    if why and skipped:
        top = ", ".join(f"{k} ×{v}" for k, v in skipped.most_common(2))
        why += f" (tasks without rows: {top})"
    return {
        "technique": technique,
        "train": why is None,
        "data": TECHNIQUE_SOURCES[(adapter, technique)],
        "sources": dict(sources),
        "estimated_examples": {"train": train, "eval": held},
        "skipped": dict(skipped),
        "reason": why or "enough data",
    }


def _adapter_entry(
    adapter: str,
    entries: list[dict[str, Any]],
    stage_view: dict[str, dict[str, Any]],
    min_examples: int,
) -> dict[str, Any]:
    """The plan's entry for `adapter`: its stage's weakness, priority and techniques."""
    stage = STAGE_OF[adapter]
    view = stage_view.get(stage) if stage else None
    trainable = [e for e in entries if e["train"]]
    volume = max((e["estimated_examples"]["train"] for e in trainable), default=0)
    weakness = view["weakness"] if view else None
    # Volume: a weak stage with little data gains less from a round than one with
    # plenty; full weight from 4x min_examples train rows.
    priority = (
        None if weakness is None else round(weakness * min(1.0, volume / (4 * min_examples)), 4)
    )
    reason = "; ".join(f"{e['technique']}: {e['reason']}" for e in entries)
    return {
        "name": adapter,
        "stage": stage,
        "train": bool(trainable),
        "weakness": weakness,
        "priority": priority,
        "metric": view,
        "techniques": entries,
        "reason": "enough data" if trainable else reason,
    }


def _cap_warnings(domains: Counter[str], setting: float, cap: float) -> list[str]:
    """The warning that too few domains make the cap equal shares, if they do."""
    if not domains or cap <= setting:
        return []
    return [
        f"only {len(domains)} domain(s) ({', '.join(sorted(domains))}): the "
        f"{setting:.0%} domain cap needs at least "
        f"{round(1 / setting)}; capped at equal shares ({cap:.0%}) "
        "instead. Add repositories from other domains."
    ]


def _ranked(adapters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainable first, then by priority (weakness weighed by data volume; stages with
    no logged metric after the measured ones), then name; each with its rank."""
    adapters.sort(
        key=lambda a: (not a["train"], a["priority"] is None, -(a["priority"] or 0.0), a["name"])
    )
    for rank, entry in enumerate(adapters, start=1):
        entry["rank"] = rank
    return adapters


def plan_from(
    candidates: Candidates,
    stages: dict[str, StageMetrics],
    counts: dict[str, int],
    settings: PlanSettings,
    invalid_plans: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The plan for these candidate rows and stage metrics (see the module doc)."""
    times = [r.authored_ts for r in candidates.rows]
    boundary = holdout_boundary(times, settings.eval_share)
    domains = Counter(r.domain for r in candidates.rows)
    cap = effective_cap(settings.domain_cap, len(domains))
    stage_view = {s: _weakness(m, settings.targets[s]) for s, m in stages.items()}
    adapters = []
    for adapter, techniques in ADAPTERS.items():
        entries = [
            _technique_entry(adapter, t, candidates, boundary, settings.min_examples)
            for t in techniques
        ]
        adapters.append(_adapter_entry(adapter, entries, stage_view, settings.min_examples))
    if not any(a["train"] for a in adapters):
        details = [shortfall(a, settings.min_examples) for a in adapters]
        if boundary is None:
            details.append("(fewer than two distinct commit dates: no time split possible)")
        raise NotEnoughData(
            {a["name"]: a["reason"] for a in adapters},
            min_examples=settings.min_examples,
            details=tuple(details),
        )
    eval_tasks = (
        len({r.task_id for r in candidates.rows if r.authored_ts >= boundary}) if boundary else 0
    )
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": PLAN_KIND,
        "created_at": now_iso(),
        "database": counts,
        "holdout": {
            "boundary": _iso(boundary) if boundary else None,
            "boundary_ts": boundary,
            "eval_share": settings.eval_share,
            "eval_tasks": eval_tasks,
            "train_tasks": len({r.task_id for r in candidates.rows}) - eval_tasks,
        },
        "replay_share": settings.replay_share,
        "domain_cap": settings.domain_cap,
        "effective_domain_cap": cap,
        "domains": dict(domains),
        "stages": stage_view,
        "failures": {"invalid_plans": invalid_plans or {}},
        "adapters": _ranked(adapters),
        "warnings": _cap_warnings(domains, settings.domain_cap, cap),
    }


def summary_markdown(plan: dict[str, Any]) -> str:
    """A short human-readable summary of a plan."""
    lines = [
        f"# Training plan ({plan['created_at']})",
        "",
        f"Holdout: tasks authored on or after {plan['holdout']['boundary']} are eval "
        f"({plan['holdout']['eval_tasks']} eval, {plan['holdout']['train_tasks']} train tasks). "
        f"Replay {plan['replay_share']:.0%} of train rows from earlier datasets; at most "
        f"{plan['effective_domain_cap']:.0%} of rows from one domain.",
        "",
        "| rank | adapter | train | weakness | technique: train/eval rows | reason |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for a in plan["adapters"]:
        techniques = ", ".join(
            "{}: {}/{}".format(t["technique"], *t["estimated_examples"].values())
            for t in a["techniques"]
        )
        weakness = "n/a" if a["weakness"] is None else f"{a['weakness']:.3f}"
        train = "yes" if a["train"] else "no"
        lines.append(
            f"| {a['rank']} | {a['name']} | {train} | {weakness} | {techniques} | {a['reason']} |"
        )
    if plan["warnings"]:
        lines += ["", "Warnings:", *(f"- {w}" for w in plan["warnings"])]
    return "\n".join(lines) + "\n"


def write_plan(planning_dir: Path, plan: dict[str, Any], out: Path | None = None) -> Path:
    """Write the plan JSON (and its `.md` summary) atomically, to `out` or a new name in
    the workspace's `planning_dir`; never overwrite a plan."""
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out = planning_dir / f"plan-{stamp}.json"
    out = Path(out)
    if out.suffix != ".json":
        raise UsageError(f"plan file {out} must end in .json")
    if out.exists():
        raise UsageError(
            f"plan file {out} already exists",
            hint="plans are never overwritten: pick another --out",
        )
    atomic_write_text(out.with_suffix(".md"), summary_markdown(plan))
    atomic_write_text(out, json.dumps(plan, indent=2, sort_keys=False) + "\n")
    return out
