"""Candidate training rows derived from the logs, one builder per adapter and technique.

SFT rows are TRL's conversational prompt-completion format, so the loss covers only the
completion; DPO rows are `prompt`/`chosen`/`rejected`. Ground truth comes from the
commits: the files changed (scope), the definitions changed (precision), a plan derived
from the diff (planning) and the diff itself (execute-code). Harness runs give DPO
pairs: plans of the same task and prompt at several temperatures, the better aligned
one chosen. A teacher model's logged answers give distillation rows. Every row carries
`meta` with its provenance.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cra.db.logs import LogAnalysis, ScoredPlan, TaskRecord
from cra.git import GitError
from cra.harness.deps import closure, dependency_order, import_graph
from cra.harness.gold import GoldSymbol
from cra.harness.index import Indexer
from cra.harness.plan import PLAN_SCHEMA, InvalidPlan, Plan, parse_plan, validate_plan
from cra.harness.planners import SYSTEM_PROMPT
from cra.harness.score import Gold, score_plan

ADAPTERS: dict[str, tuple[str, ...]] = {
    "scope": ("sft",),
    "precision": ("sft",),
    "task-analysis": ("sft",),
    "planning": ("sft", "dpo"),
    "execute-code": ("sft",),
}
"""Every adapter a plan may name, and the techniques cra can curate data for."""

STAGE_OF = {
    "scope": "scope",
    "precision": "precision",
    "planning": "planning",
    "execute-code": "execute",
    "task-analysis": None,
}
"""The logged stage metric each adapter improves (task-analysis has none logged)."""

SCOPE_SYSTEM = (
    "You are the scope stage of a coding agent. Given a task and candidate files of the "
    "repository, answer with the JSON list of the files (paths relative to the repository "
    "root) that must change to complete the task. Answer with the JSON list only."
)
PRECISION_SYSTEM = (
    "You are the precision stage of a coding agent. Given a task and the files that must "
    "change, answer with the JSON list of the definitions the change touches, each written "
    'as "path::qualname" (methods as Class.method). Answer with the JSON list only.'
)
EXECUTE_SYSTEM = (
    "You are the execute stage of a coding agent. Given a task and the current content of "
    "the files to change, answer with the change as a unified diff (git format) that applies "
    "to those files. Answer with the diff only."
)


@dataclass
class Row:
    """A candidate row: what gets written, plus what the filters need."""

    adapter: str
    technique: str
    task_id: str
    authored_ts: int
    domain: str
    source: str
    record: dict[str, Any]
    dedup_text: str  # the answers: what near-duplicates are judged on, with...
    dedup_context: str = ""  # ...the task text, shared by a task's rows
    group: tuple[str, str] = field(init=False, repr=False, compare=False)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.group = (self.adapter, self.technique)  # the unit that `cra train` selects

    @property
    def content_key(self) -> str:
        """sha1 of the normalised prompt (system aside) and answers: equal for exact
        duplicates."""
        if self._key is None:
            self._key = self._content_key()
        return self._key

    def _content_key(self) -> str:
        parts = [
            m["content"] for m in self.record["prompt"] if m.get("role") != "system"
        ]  # the system prompt is the same in every row of an adapter
        for name in ("completion", "chosen", "rejected"):
            if name in self.record:
                parts.extend(m["content"] for m in self.record[name])
        text = " ".join(" ".join(parts).lower().split())
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass
class Candidates:
    """Rows per (adapter, technique), and why tasks yielded none."""

    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)

    def skip(self, adapter: str, technique: str, reason: str) -> None:
        """Count a task that gave no row for an adapter, and why."""
        self.skipped.setdefault(f"{adapter}/{technique}", Counter())[reason] += 1


@dataclass(frozen=True)
class CurateOptions:
    """The settings row building needs (from `[curate]`)."""

    teacher_models: tuple[str, ...] = ()
    teacher_min_alignment: float = 0.7
    dpo_min_margin: float = 0.2
    execute_requires_verified: bool = True
    max_prompt_chars: int = 12_000


def _meta(task: TaskRecord, adapter: str, technique: str, source: str, **extra: Any) -> dict:
    return {
        "adapter": adapter,
        "technique": technique,
        "task_id": task.task_id,
        "repo": task.repo,
        "commit": task.sha,
        "authored_at": task.authored_at,
        "source": source,
        "domain": task.domain,
        "scores": extra.pop("scores", {}),
        **extra,
    }


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _sft(
    task: TaskRecord,
    adapter: str,
    source: str,
    prompt: list[dict[str, Any]],
    completion: str,
    dedup: str,
    **meta: Any,
) -> Row:
    record = {
        "prompt": prompt,
        "completion": [_msg("assistant", completion)],
        "meta": _meta(task, adapter, "sft", source, **meta),
    }
    return Row(
        adapter,
        "sft",
        task.task_id,
        task.authored_ts,
        task.domain,
        source,
        record,
        dedup,
        task.task_text,
    )


def _retrieved(results: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[str]]]:
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
        _msg("system", SYSTEM_PROMPT.format(schema=json.dumps(PLAN_SCHEMA))),
        _msg("user", f"Task: {task}\n\nRelevant code:\n{context}"),
    ]


def gold_plan(task: TaskRecord, deps: Mapping[str, set[str]] | None = None) -> dict[str, Any]:
    """The plan the commit itself implies: one step per changed source file, naming the
    definitions the diff touches, ordered dependency-first by the parent's import graph
    (`deps`: each file's transitive imports, when known), and the test files the commit
    changed."""
    deps = deps or {}
    summary = task.task_text.strip().splitlines()[0] if task.task_text.strip() else task.subject
    by_file: dict[str, list[dict[str, Any]]] = {}
    for sym in task.gold_symbols:
        by_file.setdefault(sym["path"], []).append(sym)
    entries = {f["path"]: f for f in task.gold_files}
    order = dependency_order(list(entries), deps)
    ids = {path: n for n, path in enumerate(order, start=1)}
    steps = []
    for path in order:
        entry = entries[path]
        syms = by_file.get(path, [])
        kinds = {s["change"] for s in syms}
        action = "add" if kinds == {"added"} and entry.get("old_path") is None else "modify"
        verbs = {"added": "Add", "deleted": "Remove", "modified": "Change"}
        parts = [f"{verbs.get(s['change'], 'Change')} {s['qualname']}" for s in syms]
        steps.append(
            {
                "id": ids[path],
                "file": path,
                "symbols": [s["qualname"] for s in syms],
                "action": action,
                "description": "; ".join(parts) or f"Change {path}",
                "depends_on": sorted(ids[d] for d in deps.get(path, ()) if d in ids),
            }
        )
    tests = [
        {"file": t, "description": f"Add or update the tests for: {summary}"}
        for t in task.files_tests
    ]
    return {"summary": summary, "steps": steps, "tests": tests}


def _gold(task: TaskRecord) -> Gold:
    return Gold.build(
        [(f["path"], f.get("old_path")) for f in task.gold_files],
        [GoldSymbol(s["path"], s["qualname"], s["change"]) for s in task.gold_symbols],
    )


def _by_task(plans: Iterable[ScoredPlan]) -> Iterator[tuple[str, list[ScoredPlan]]]:
    current: str | None = None
    batch: list[ScoredPlan] = []
    for plan in plans:
        if plan.task_id != current and batch:
            yield current, batch  # type: ignore[misc]
            batch = []
        current = plan.task_id
        batch.append(plan)
    if batch:
        yield current, batch  # type: ignore[misc]


def plan_json(plan: Plan) -> str:
    """Canonical JSON of a plan (equal to `Plan.to_json`, without dataclass copying)."""
    data = {
        "summary": plan.summary,
        "steps": [
            {
                "id": s.id,
                "file": s.file,
                "symbols": list(s.symbols),
                "action": s.action,
                "description": s.description,
                "depends_on": list(s.depends_on),
            }
            for s in plan.steps
        ],
        "tests": [{"file": t.file, "description": t.description} for t in plan.tests],
    }
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def plan_gist(plan: Plan) -> str:
    """What a plan says, without its JSON keys: the text near-duplicates are judged on."""
    return " ".join(
        [plan.summary]
        + [f"{s.action} {s.file} {' '.join(s.symbols)} {s.description}" for s in plan.steps]
        + [t.file for t in plan.tests]
    )


def _stored(plan: ScoredPlan) -> dict[str, Any] | None:
    """A valid plan as the harness stored it: canonical JSON (`Plan.to_json`), validated
    when it was recorded, so it is only decoded here."""
    if not plan.valid or not plan.plan:
        return None
    try:
        data = json.loads(plan.plan)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _stored_gist(data: dict[str, Any]) -> str:
    """:func:`plan_gist` of a stored plan."""
    steps = data.get("steps") or []
    return " ".join(
        [str(data.get("summary", ""))]
        + [
            f"{s.get('action')} {s.get('file')} {' '.join(s.get('symbols') or [])} "
            f"{s.get('description')}"
            for s in steps
            if isinstance(s, dict)
        ]
        + [str(t.get("file")) for t in data.get("tests") or [] if isinstance(t, dict)]
    )


def _parsed(text: str | None) -> Plan | None:
    try:
        return parse_plan(text)
    except InvalidPlan:
        return None


def build_candidates(
    logs: LogAnalysis,
    groups: Iterable[tuple[str, str]],
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
    indexers: dict[str, Indexer] = {}

    def deps_of(task: TaskRecord) -> dict[str, set[str]]:
        clone = repos_dir / task.repo / "repo" if repos_dir else None
        if curated is None or clone is None or not clone.exists() or not task.parent_sha:
            return {}
        indexer = indexers.get(task.repo)
        if indexer is None:
            indexer = indexers[task.repo] = Indexer(curated, clone)
        try:
            index = indexer.index(task.parent_sha)
        except GitError:
            return {}
        return closure(import_graph({p: index.imports(p) for p in index.parsed}))

    wanted = set(groups)
    out = Candidates()
    tasks = logs.tasks()
    by_id = {t.task_id: t for t in tasks}
    retrieval: dict[str, list[dict[str, Any]]] = {}
    for r in logs.retrievals():
        retrieval.setdefault(r.task_id, r.results)  # the first decision made for the task
    need_plans = {("planning", "sft"), ("planning", "dpo")} & wanted
    plans: dict[str, list[ScoredPlan]] = {}
    if need_plans:
        plans = dict(_by_task(logs.iter_plans()))
    verified = logs.verified_tasks()
    teachers = set(options.teacher_models)
    texts: dict[int, str | None] = {}
    parsed: dict[str, list[dict[str, Any]]] = {}

    def prompt_text(plan: ScoredPlan) -> str | None:
        """The messages of the plan's model call, as logged (JSON text)."""
        if plan.llm_call_id not in texts:
            texts[plan.llm_call_id] = logs.call_messages_text(plan.llm_call_id)  # type: ignore[arg-type,index]
        return texts[plan.llm_call_id]  # type: ignore[index]

    def prompt_of(plan: ScoredPlan) -> list[dict[str, Any]] | None:
        text = prompt_text(plan)
        if text is None:
            return None
        if text not in parsed:
            parsed[text] = json.loads(text)
        return parsed[text]

    for task in tasks:
        results = retrieval.get(task.task_id, [])
        has_gold = bool(task.gold_files)
        if ("scope", "sft") in wanted:
            if not has_gold:
                out.skip("scope", "sft", "no gold files (task not run by the harness)")
            else:
                files, _ = _retrieved(results)
                listing = "\n".join(f"- {f}" for f in files) or "(none retrieved)"
                answer = json.dumps([f["path"] for f in task.gold_files])
                out.rows.append(
                    _sft(
                        task,
                        "scope",
                        "gold",
                        [
                            _msg("system", SCOPE_SYSTEM),
                            _msg("user", f"Task: {task.task_text}\n\nCandidate files:\n{listing}"),
                        ],
                        answer,
                        answer,
                    )
                )
        if ("precision", "sft") in wanted:
            if not task.gold_symbols:
                out.skip("precision", "sft", "no gold symbols")
            else:
                _, symbols = _retrieved(results)
                files = [f["path"] for f in task.gold_files]
                known = (
                    "\n".join(f"- {f} :: {s}" for f in files for s in symbols.get(f, []))
                    or "(none retrieved)"
                )
                answer = json.dumps([f"{s['path']}::{s['qualname']}" for s in task.gold_symbols])
                user = (
                    f"Task: {task.task_text}\n\nFiles to change:\n"
                    + "\n".join(f"- {f}" for f in files)
                    + f"\n\nDefinitions retrieved in them:\n{known}"
                )
                out.rows.append(
                    _sft(
                        task,
                        "precision",
                        "gold",
                        [_msg("system", PRECISION_SYSTEM), _msg("user", user)],
                        answer,
                        answer,
                    )
                )
        task_plans = plans.get(task.task_id, [])
        llm_plans = [p for p in task_plans if p.llm_call_id is not None]
        texts.clear()  # one task's prompts at a time
        parsed.clear()

        if ("planning", "sft") in wanted:
            if not has_gold:
                out.skip("planning", "sft", "no gold files (task not run by the harness)")
            else:
                deps = deps_of(task)
                plan = validate_plan(gold_plan(task, deps))
                score = score_plan(plan, _gold(task), deps)
                prompt = prompt_of(llm_plans[0]) if llm_plans else None
                prompt = prompt or planner_prompt(task.task_text, results)
                text = plan_json(plan)
                out.rows.append(
                    _sft(
                        task,
                        "planning",
                        "gold",
                        prompt,
                        text,
                        plan_gist(plan),
                        scores={"alignment": score.alignment},
                    )
                )
            for p in llm_plans:
                if p.model not in teachers or not p.valid:
                    continue
                if p.alignment < options.teacher_min_alignment:
                    out.skip("planning", "sft", "teacher plan below the alignment floor")
                    continue
                prompt = prompt_of(p)
                parsed = _parsed(p.plan)
                if prompt and parsed:
                    out.rows.append(
                        _sft(
                            task,
                            "planning",
                            "teacher",
                            prompt,
                            plan_json(parsed),
                            plan_gist(parsed),
                            scores=p.scores(),
                            plan_id=p.id,
                            model=p.model,
                        )
                    )
        if ("planning", "dpo") in wanted:
            row = _dpo_row(task, llm_plans, prompt_text, prompt_of, options, out)
            if row is not None:
                out.rows.append(row)
        if ("execute-code", "sft") in wanted:
            row = _execute_row(task, repos_dir, verified, options, out)
            if row is not None:
                out.rows.append(row)
    if ("task-analysis", "sft") in wanted:
        found = 0
        for call in logs.llm_calls(stage="task-analysis"):
            task = by_id.get(call.task_id or "")
            if task is None or call.error or not (call.response or "").strip():
                continue
            if call.model not in teachers:
                continue
            found += 1
            out.rows.append(
                _sft(
                    task,
                    "task-analysis",
                    "teacher",
                    call.messages,
                    call.response.strip(),  # type: ignore[union-attr]
                    call.response,
                    llm_call_id=call.id,
                    model=call.model,
                )
            )
        if not found:
            out.skip("task-analysis", "sft", "no teacher task analyses ([curate] teacher_models)")
    out.rows.sort(key=lambda r: (r.authored_ts, r.task_id, r.adapter, r.technique))
    return out


def _dpo_row(
    task: TaskRecord,
    llm_plans: list[ScoredPlan],
    prompt_text: Any,
    prompt_of: Any,
    options: CurateOptions,
    out: Candidates,
) -> Row | None:
    """The best against the worst plan of one prompt, when their gap is wide enough."""
    if len(llm_plans) < 2:
        out.skip("planning", "dpo", "fewer than two model plans")
        return None
    groups: dict[str, list[ScoredPlan]] = {}  # plans by the exact prompt they answered
    prompts: dict[str, ScoredPlan] = {}
    for p in llm_plans:
        key = prompt_text(p)
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
    if gap < options.dpo_min_margin:
        out.skip("planning", "dpo", "alignment margin below the minimum")
        return None
    chosen_plan = _stored(hi)
    if chosen_plan is None:
        out.skip("planning", "dpo", "chosen plan does not validate")
        return None
    chosen = hi.plan or ""
    rejected_plan = _stored(lo)
    rejected = (lo.plan or "") if rejected_plan else (lo.raw or "")
    record = {
        "prompt": prompt_of(prompts[key]),
        "chosen": [_msg("assistant", chosen)],
        "rejected": [_msg("assistant", rejected)],
        "meta": _meta(
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
    gist = _stored_gist(rejected_plan) if rejected_plan else rejected
    dedup = f"{_stored_gist(chosen_plan)} {gist}"
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
    verified: set[str],
    options: CurateOptions,
    out: Candidates,
) -> Row | None:
    """The commit's source diff as the answer to the task plus the parent's sources."""
    from cra.git import git

    if options.execute_requires_verified and task.task_id not in verified:
        out.skip("execute-code", "sft", "not verified by its tests")
        return None
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
    return _sft(
        task,
        "execute-code",
        "gold",
        [_msg("system", EXECUTE_SYSTEM), _msg("user", user)],
        diff,
        diff,
    )
