"""Plans as training text: the plan a commit implies, and canonical JSON and gists of
plans (what near-duplicates are judged on), of parsed plans and of plans as the harness
stored them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cra.db.log_tasks import ScoredPlan, TaskRecord
from cra.harness.deps import dependency_order
from cra.harness.gold import GoldSymbol
from cra.harness.plan import InvalidPlan, Plan, parse_plan
from cra.harness.score import Gold


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


def gold_of(task: TaskRecord) -> Gold:
    """What the commit of `task` changed, as the harness scores plans against."""
    return Gold.build(
        [(f["path"], f.get("old_path")) for f in task.gold_files],
        [GoldSymbol(s["path"], s["qualname"], s["change"]) for s in task.gold_symbols],
    )


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


def stored_plan(plan: ScoredPlan) -> dict[str, Any] | None:
    """A valid plan as the harness stored it: canonical JSON (`Plan.to_json`), validated
    when it was recorded, so it is only decoded here."""
    if not plan.valid or not plan.plan:
        return None
    try:
        data = json.loads(plan.plan)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def stored_gist(data: dict[str, Any]) -> str:
    """:func:`plan_gist` of a stored plan (:func:`stored_plan`)."""
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


def parse_or_none(text: str | None) -> Plan | None:
    """The plan in `text`, or None where it does not parse and validate."""
    try:
        return parse_plan(text)
    except InvalidPlan:
        return None
