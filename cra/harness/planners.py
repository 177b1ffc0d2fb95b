"""Planners turn a task and its retrieved context into a plan.

- `baseline`: deterministic, no model: the files and symbols retrieval ranked highest,
  ordered dependency-first by the import graph.
- `llm`: a model behind any OpenAI-compatible endpoint, asked for the plan schema as
  structured output, once per temperature. Junk output becomes an invalid plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cra.harness.deps import dependency_order
from cra.harness.index import SnapshotIndex
from cra.harness.plan import PLAN_SCHEMA, InvalidPlan, Plan, parse_plan, validate_plan
from cra.harness.retrieve import Hit
from cra.llm.client import LLMClient, LLMError

PLANNERS = ("baseline", "llm")


@dataclass(frozen=True)
class PlanAttempt:
    """One planner output: the plan when valid, else the raw text and why it failed."""

    planner: str
    temperature: float | None
    plan: Plan | None
    raw: str | None
    error: str | None
    llm_call_id: int | None = None


def baseline_plan(
    task: str,
    hits: Sequence[Hit],
    deps: Mapping[str, set[str]],
    test_files: Sequence[str],
    *,
    max_files: int,
    max_symbols: int,
) -> Plan:
    """Plan the top `max_files` retrieved files (dependency-first) with up to
    `max_symbols` retrieved symbols each, and the test files that import them."""
    if max_files < 1 or max_symbols < 0:
        raise ValueError(
            f"max_files must be >= 1 and max_symbols >= 0, got {max_files}, {max_symbols}"
        )
    files: list[str] = []
    symbols: dict[str, list[str]] = {}
    for hit in hits:
        if hit.file not in symbols:
            if len(files) == max_files:
                continue
            files.append(hit.file)
            symbols[hit.file] = []
        if hit.symbol and len(symbols[hit.file]) < max_symbols:
            symbols[hit.file].append(hit.symbol)
    ordered = dependency_order(files, deps)
    ids = {path: n for n, path in enumerate(ordered, start=1)}
    summary = task.strip().splitlines()[0] if task.strip() else "change the code"
    steps = [
        {
            "id": ids[path],
            "file": path,
            "symbols": symbols[path],
            "action": "modify",
            "description": f"Change {', '.join(symbols[path]) or path} for: {summary}",
            "depends_on": sorted(ids[d] for d in deps.get(path, ()) if d in ids),
        }
        for path in ordered
    ]
    tests = [
        {"file": t, "description": "Run and extend the tests that cover the changed code"}
        for t in test_files
        if deps.get(t, set()) & set(files)
    ][:max_files]
    return validate_plan({"summary": summary, "steps": steps, "tests": tests})


SYSTEM_PROMPT = """You are the planning stage of a coding agent. Given a task and the most \
relevant code of the repository, write a plan as JSON matching this schema:
{schema}
Each step names one file (a path relative to the repository root), the functions, classes \
or methods (qualified like Class.method) to change or add in it, the action (modify, add or \
delete), what to do, and the ids of the steps it depends on. Order steps dependency-first. \
List the test files to add or update. Answer with the JSON object only."""


def plan_messages(task: str, hits: Sequence[Hit], index: SnapshotIndex) -> list[dict[str, str]]:
    """The chat messages the `llm` planner sends: the schema, the task, the context."""
    lines = []
    for hit in hits:
        if hit.symbol is None:
            lines.append(f"- {hit.file}")
            continue
        sym = next((s for s in index.symbols(hit.file) if s.qualname == hit.symbol), None)
        signature = sym.signature if sym else hit.symbol
        doc = f" — {sym.docstring.splitlines()[0]}" if sym and sym.docstring else ""
        lines.append(f"- {hit.file} :: {hit.symbol} ({hit.kind}) `{signature}`{doc}")
    context = "\n".join(lines) or "(nothing retrieved)"
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(schema=json.dumps(PLAN_SCHEMA))},
        {"role": "user", "content": f"Task: {task}\n\nRelevant code:\n{context}"},
    ]


def llm_plans(
    client: LLMClient,
    *,
    task_id: str,
    task: str,
    hits: Sequence[Hit],
    index: SnapshotIndex,
    temperatures: Sequence[float],
    max_tokens: int,
) -> list[PlanAttempt]:
    """One plan per temperature from the model; failures are recorded, never raised."""
    messages = plan_messages(task, hits, index)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": PLAN_SCHEMA, "strict": True},
    }
    attempts = []
    for temperature in temperatures:
        try:
            completion = client.complete(
                stage="plan",
                task_id=task_id,
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                response_format=response_format,
            )
        except LLMError as exc:
            attempts.append(PlanAttempt("llm", temperature, None, None, str(exc), exc.call_id))
            continue
        try:
            plan = parse_plan(completion.text)
            attempts.append(
                PlanAttempt("llm", temperature, plan, completion.text, None, completion.call_id)
            )
        except InvalidPlan as exc:
            attempts.append(
                PlanAttempt(
                    "llm", temperature, None, completion.text, exc.reason, completion.call_id
                )
            )
    return attempts
