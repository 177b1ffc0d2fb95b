"""Candidate rows from the logs: one builder per adapter and technique.

Each builder takes one task (with its retrieval and model plans) and returns its rows,
counting a task that gives none, and why, in :attr:`Candidates.skipped`. The
task-analysis builder reads the logged model calls instead of the tasks.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.curation.gold import (
    gold_of,
    gold_plan,
    parse_or_none,
    plan_gist,
    plan_json,
    stored_gist,
    stored_plan,
)
from cra.curation.ranker import GROUP as RANKER_GROUP
from cra.curation.ranker import RankerRows, ranker_domains
from cra.curation.rows import (
    EXECUTE_SYSTEM,
    PRECISION_SYSTEM,
    SCOPE_SYSTEM,
    Candidates,
    CurateOptions,
    Row,
    message,
    row_meta,
    sft_row,
)
from cra.db.log_tasks import ScoredPlan, TaskRecord
from cra.db.logs import LogAnalysis
from cra.git import GitError, git
from cra.harness.deps import closure, import_graph
from cra.harness.index import Indexer
from cra.harness.plan import PLAN_SCHEMA, validate_plan
from cra.harness.planners import SYSTEM_PROMPT
from cra.harness.score import score_plan

Group = tuple[str, str]


class _Deps:
    """Each file's transitive imports at a task's parent commit, from the code index
    (`curated`); empty where there is no index, clone or parent."""

    def __init__(self, repos_dir: Path | None, curated: sqlite3.Connection | None) -> None:
        self.repos_dir = repos_dir
        self.curated = curated
        self.indexers: dict[str, Indexer] = {}

    def __call__(self, task: TaskRecord) -> dict[str, set[str]]:
        clone = self.repos_dir / task.repo / "repo" if self.repos_dir else None
        if self.curated is None or clone is None or not clone.exists() or not task.parent_sha:
            return {}
        indexer = self.indexers.get(task.repo)
        if indexer is None:
            indexer = self.indexers[task.repo] = Indexer(self.curated, clone)
        try:
            index = indexer.index(task.parent_sha)
        except GitError:
            return {}
        return closure(import_graph({p: index.imports(p) for p in index.parsed}))


class _Prompts:
    """The logged messages of plans' model calls, cached for one task at a time."""

    def __init__(self, logs: LogAnalysis) -> None:
        self.logs = logs
        self.texts: dict[int, str | None] = {}
        self.parsed: dict[str, list[dict[str, Any]]] = {}

    def clear(self) -> None:
        """Forget the previous task's prompts."""
        self.texts.clear()
        self.parsed.clear()

    def text(self, plan: ScoredPlan) -> str | None:
        """The messages of the plan's model call, as logged (JSON text)."""
        call = plan.llm_call_id
        if call is None:
            return None
        if call not in self.texts:
            self.texts[call] = self.logs.call_messages_text(call)
        return self.texts[call]

    def messages(self, plan: ScoredPlan) -> list[dict[str, Any]] | None:
        """The messages of the plan's model call, decoded."""
        text = self.text(plan)
        if text is None:
            return None
        if text not in self.parsed:
            self.parsed[text] = json.loads(text)
        return self.parsed[text]


@dataclass
class _Context:
    """What the builders read besides the task: settings, logs gathered once, caches,
    and the candidates (rows and skip counts) being built."""

    options: CurateOptions
    teachers: set[str]
    verified: set[str]
    validated: set[str]
    repos_dir: Path | None
    deps: _Deps
    prompts: _Prompts
    out: Candidates


@dataclass(frozen=True)
class _TaskView:
    """One task, the first retrieval made for it and its plans from model calls."""

    task: TaskRecord
    results: list[dict[str, Any]]
    llm_plans: list[ScoredPlan]


Builder = Callable[[_TaskView, _Context], list[Row]]


def _retrieved(results: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[str]]]:
    """The retrieved files, in order, and the definitions retrieved in each."""
    files: list[str] = []
    symbols: dict[str, list[str]] = {}
    for hit in results:
        path = hit.get("file")
        if not path:
            continue
        if path not in symbols:
            files.append(path)
            symbols[path] = []
        if hit.get("symbol") and hit["symbol"] not in symbols[path]:
            symbols[path].append(hit["symbol"])
    return files, symbols


def planner_prompt(task: str, results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The planner's messages for a task and its retrieval (the harness's format)."""
    lines = [
        f"- {h['file']} :: {h['symbol']} ({h.get('kind', 'symbol')})"
        if h.get("symbol")
        else f"- {h['file']}"
        for h in results
        if h.get("file")
    ]
    context = "\n".join(lines) or "(nothing retrieved)"
    return [
        message("system", SYSTEM_PROMPT.format(schema=json.dumps(PLAN_SCHEMA))),
        message("user", f"Task: {task}\n\nRelevant code:\n{context}"),
    ]


def _by_task(plans: Iterable[ScoredPlan]) -> Iterator[tuple[str, list[ScoredPlan]]]:
    """The plans (ordered by task) in batches of one task each."""
    current = ""
    batch: list[ScoredPlan] = []
    for plan in plans:
        if plan.task_id != current and batch:
            yield current, batch
            batch = []
        current = plan.task_id
        batch.append(plan)
    if batch:
        yield current, batch


NO_GOLD_FILES = "no gold files (task not run by the harness)"
NOT_VALIDATED = "not validated yet (run `cra harness validate`)"
NOT_VERIFIED = "not verified by its tests"


def _scope_rows(view: _TaskView, ctx: _Context) -> list[Row]:
    """The files the commit changed, as the answer to the task and the retrieved files."""
    task = view.task
    if not task.gold_files:
        ctx.out.skip("scope", "sft", NO_GOLD_FILES)
        return []
    files, _ = _retrieved(view.results)
    listing = "\n".join(f"- {f}" for f in files) or "(none retrieved)"
    answer = json.dumps([f["path"] for f in task.gold_files])
    user = f"Task: {task.task_text}\n\nCandidate files:\n{listing}"
    prompt = [message("system", SCOPE_SYSTEM), message("user", user)]
    return [sft_row(task, "scope", "gold", prompt, answer, answer)]


def _precision_rows(view: _TaskView, ctx: _Context) -> list[Row]:
    """The definitions the commit changed, given the files and what retrieval found."""
    task = view.task
    if not task.gold_symbols:
        ctx.out.skip("precision", "sft", "no gold symbols")
        return []
    _, symbols = _retrieved(view.results)
    files = [f["path"] for f in task.gold_files]
    known = "\n".join(f"- {f} :: {s}" for f in files for s in symbols.get(f, []))
    answer = json.dumps([f"{s['path']}::{s['qualname']}" for s in task.gold_symbols])
    user = (
        f"Task: {task.task_text}\n\nFiles to change:\n"
        + "\n".join(f"- {f}" for f in files)
        + f"\n\nDefinitions retrieved in them:\n{known or '(none retrieved)'}"
    )
    prompt = [message("system", PRECISION_SYSTEM), message("user", user)]
    return [sft_row(task, "precision", "gold", prompt, answer, answer)]


def _planning_sft_rows(view: _TaskView, ctx: _Context) -> list[Row]:
    """The gold plan of the commit, and teacher plans above the alignment floor."""
    task, llm_plans = view.task, view.llm_plans
    rows: list[Row] = []
    if not task.gold_files:
        ctx.out.skip("planning", "sft", NO_GOLD_FILES)
    else:
        deps = ctx.deps(task)
        plan = validate_plan(gold_plan(task, deps))
        score = score_plan(plan, gold_of(task), deps)
        prompt = ctx.prompts.messages(llm_plans[0]) if llm_plans else None
        prompt = prompt or planner_prompt(task.task_text, view.results)
        text, gist = plan_json(plan), plan_gist(plan)
        scores = {"alignment": score.alignment}
        rows.append(sft_row(task, "planning", "gold", prompt, text, gist, scores=scores))
    for p in llm_plans:
        if p.model not in ctx.teachers or not p.valid:
            continue
        if p.alignment < ctx.options.teacher_min_alignment:
            ctx.out.skip("planning", "sft", "teacher plan below the alignment floor")
            continue
        prompt = ctx.prompts.messages(p)
        teacher = parse_or_none(p.plan)
        if prompt and teacher:
            text, gist = plan_json(teacher), plan_gist(teacher)
            meta = {"scores": p.scores(), "plan_id": p.id, "model": p.model}
            rows.append(sft_row(task, "planning", "teacher", prompt, text, gist, **meta))
    return rows


def _planning_dpo_rows(view: _TaskView, ctx: _Context) -> list[Row]:
    """A preference pair of model plans of one prompt (see :func:`_dpo_row`)."""
    row = _dpo_row(view.task, view.llm_plans, ctx)
    return [] if row is None else [row]


def _execute_rows(view: _TaskView, ctx: _Context) -> list[Row]:
    """The commit's source diff (see :func:`_execute_row`)."""
    if ctx.options.execute_requires_verified and view.task.task_id not in ctx.verified:
        validated = view.task.task_id in ctx.validated
        ctx.out.skip("execute-code", "sft", NOT_VERIFIED if validated else NOT_VALIDATED)
        return []
    row = _execute_row(view.task, ctx.repos_dir, ctx.options, ctx.out)
    return [] if row is None else [row]


PER_TASK: dict[Group, Builder] = {
    ("scope", "sft"): _scope_rows,
    ("precision", "sft"): _precision_rows,
    ("planning", "sft"): _planning_sft_rows,
    ("planning", "dpo"): _planning_dpo_rows,
    ("execute-code", "sft"): _execute_rows,
}
"""The builders that read one task at a time, in the order they run on each task."""


def _task_analysis_rows(logs: LogAnalysis, tasks: list[TaskRecord], ctx: _Context) -> list[Row]:
    """Teacher models' logged task analyses, each the answer to its logged messages."""
    by_id = {t.task_id: t for t in tasks}
    rows: list[Row] = []
    for call in logs.llm_calls(stage="task-analysis"):
        task = by_id.get(call.task_id or "")
        response = call.response or ""
        if task is None or call.error or not response.strip():
            continue
        if call.model not in ctx.teachers:
            continue
        meta = {"llm_call_id": call.id, "model": call.model}
        messages = call.messages
        rows.append(
            sft_row(task, "task-analysis", "teacher", messages, response.strip(), response, **meta)
        )
    if not rows:
        ctx.out.skip("task-analysis", "sft", "no teacher task analyses ([curate] teacher_models)")
    return rows


def build_candidates(
    logs: LogAnalysis,
    groups: Iterable[Group],
    options: CurateOptions,
    *,
    repos_dir: Path | None = None,
    curated: sqlite3.Connection | None = None,
) -> Candidates:
    """Every row the logs support for the (adapter, technique) `groups`, oldest first.

    `repos_dir` (the workspace's `repos/`) is where gold patches are read from; without
    it, execute-code rows cannot be built. With `curated` (the code index) as well, gold
    plans are ordered by the parent's import graph; without, they keep the diff's order.
    """
    wanted = set(groups)
    out = Candidates()
    tasks = logs.tasks()
    retrieval: dict[str, list[dict[str, Any]]] = {}
    for r in logs.retrievals():
        retrieval.setdefault(r.task_id, r.results)  # the first decision made for the task
    plans: dict[str, list[ScoredPlan]] = {}
    if {("planning", "sft"), ("planning", "dpo")} & wanted:
        plans = dict(_by_task(logs.iter_plans()))
    ctx = _Context(
        options=options,
        teachers=set(options.teacher_models),
        verified=logs.verified_tasks(),
        validated=logs.validated_tasks(),
        repos_dir=repos_dir,
        deps=_Deps(repos_dir, curated),
        prompts=_Prompts(logs),
        out=out,
    )
    builders = [build for group, build in PER_TASK.items() if group in wanted]
    for task in tasks:
        ctx.prompts.clear()  # one task's prompts at a time
        llm_plans = [p for p in plans.get(task.task_id, []) if p.llm_call_id is not None]
        view = _TaskView(task, retrieval.get(task.task_id, []), llm_plans)
        for build in builders:
            out.rows.extend(build(view, ctx))
    if ("task-analysis", "sft") in wanted:
        out.rows.extend(_task_analysis_rows(logs, tasks, ctx))
    if RANKER_GROUP in wanted:
        _add_ranker_rows(logs, tasks, options, repos_dir, curated, out)
    out.rows.sort(key=lambda r: (r.authored_ts, r.task_id, r.adapter, r.technique))
    return out


def _add_ranker_rows(
    logs: LogAnalysis,
    tasks: list[TaskRecord],
    options: CurateOptions,
    repos_dir: Path | None,
    curated: sqlite3.Connection | None,
    out: Candidates,
) -> None:
    """The scope ranker's rows (see :mod:`cra.curation.ranker`), its step's counts as
    the group's skip reasons."""
    if repos_dir is None or curated is None:
        out.skip(*RANKER_GROUP, "no repository clones or code index to read snapshots from")
        return
    step = RankerRows(
        logs.conn,
        curated,
        repos_dir,
        domains=ranker_domains(tasks),
        negatives=options.ranker_negatives,
    )
    out.rows.extend(step.build())
    for reason, n in step.dropped.items():
        if n:
            out.skipped.setdefault("/".join(RANKER_GROUP), Counter())[reason] += n


def _dpo_row(task: TaskRecord, llm_plans: list[ScoredPlan], ctx: _Context) -> Row | None:
    """The best against the worst plan of one prompt, when their gap is wide enough."""
    out = ctx.out
    if len(llm_plans) < 2:
        out.skip("planning", "dpo", "fewer than two model plans")
        return None
    groups: dict[str, list[ScoredPlan]] = {}  # plans by the exact prompt they answered
    prompts: dict[str, ScoredPlan] = {}
    for p in llm_plans:
        key = ctx.prompts.text(p)
        if not key:
            continue
        groups.setdefault(key, []).append(p)
        prompts[key] = p
    best: tuple[float, str, ScoredPlan, ScoredPlan] | None = None
    for key, members in groups.items():
        if len(members) < 2:
            continue
        # Invalid plans score 0; ties go to the lower temperature (the surer answer).
        ranked = sorted(members, key=lambda p: (-p.alignment, p.temperature or 0.0, p.id))
        hi, lo = ranked[0], ranked[-1]
        gap = hi.alignment - lo.alignment
        if best is None or gap > best[0]:
            best = (gap, key, hi, lo)
    if best is None:
        out.skip("planning", "dpo", "fewer than two model plans of the same prompt")
        return None
    gap, key, hi, lo = best
    if gap < ctx.options.dpo_min_margin:
        out.skip("planning", "dpo", "alignment margin below the minimum")
        return None
    chosen_plan = stored_plan(hi)
    if chosen_plan is None:
        out.skip("planning", "dpo", "chosen plan does not validate")
        return None
    chosen = hi.plan or ""
    rejected_plan = stored_plan(lo)
    rejected = (lo.plan or "") if rejected_plan else (lo.raw or "")
    record = {
        "prompt": ctx.prompts.messages(prompts[key]),
        "chosen": [message("assistant", chosen)],
        "rejected": [message("assistant", rejected)],
        "meta": row_meta(
            task,
            "planning",
            "dpo",
            "harness",
            scores={"chosen": hi.alignment, "rejected": lo.alignment, "margin": gap},
            chosen_plan_id=hi.id,
            rejected_plan_id=lo.id,
            temperatures=[hi.temperature, lo.temperature],
            run_id=hi.run_id,
        ),
    }
    gist = stored_gist(rejected_plan) if rejected_plan else rejected
    dedup = f"{stored_gist(chosen_plan)} {gist}"
    return Row(
        "planning",
        "dpo",
        task.task_id,
        task.authored_ts,
        task.domain,
        "harness",
        record,
        dedup,
        task.task_text,
    )


def _execute_row(
    task: TaskRecord,
    repos_dir: Path | None,
    options: CurateOptions,
    out: Candidates,
) -> Row | None:
    """The commit's source diff as the answer to the task plus the parent's sources (the
    caller has checked that the task is verified where that is required)."""
    clone = repos_dir / task.repo / "repo" if repos_dir else None
    if clone is None or not clone.exists() or not task.parent_sha:
        out.skip("execute-code", "sft", "no repository clone to read the patch from")
        return None
    files = [f["path"] for f in task.gold_files]
    if not files:
        out.skip("execute-code", "sft", "no gold files (task not run by the harness)")
        return None
    try:
        olds = [f.get("old_path") or f["path"] for f in task.gold_files]
        diff = git(
            "diff",
            "--no-color",
            "-M",
            task.parent_sha,
            task.sha,
            "--",
            *sorted(set(files) | set(olds)),
            cwd=clone,
        )
        sources = []
        for path in olds:
            try:
                body = git("show", f"{task.parent_sha}:{path}", cwd=clone)
            except GitError:
                body = ""  # a file the commit adds
            sources.append(f"### {path}\n```python\n{body}```")
    except GitError as exc:
        out.skip("execute-code", "sft", f"git failed: {str(exc)[:60]}")
        return None
    user = f"Task: {task.task_text}\n\nFiles to change:\n\n" + "\n\n".join(sources)
    if len(user) > options.max_prompt_chars or not diff.strip():
        out.skip("execute-code", "sft", "prompt too long or empty diff")
        return None
    return sft_row(
        task,
        "execute-code",
        "gold",
        [message("system", EXECUTE_SYSTEM), message("user", user)],
        diff,
        diff,
    )
