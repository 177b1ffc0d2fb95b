"""Metrics per adapter kind, and the noise floor a difference must exceed to count.

- scope: file recall and precision of the files the output names;
- precision: symbol recall and precision (`path::qualname`, or bare names);
- planning: plan-diff alignment through the harness scorer (an unparseable plan scores 0);
- execute-code: whether the output's patch applies to the task's parent commit, and on
  verified tasks whether it passes their FAIL_TO_PASS and PASS_TO_PASS tests (`tests_pass`,
  graded in the sandbox by `cra.adapters.evaluate`);
- anything else (task-analysis): token F1 and exact match against the reference answer.

Each example gets a value per metric; a version's metric is the mean. The noise floor of
a comparison is the larger of `[adapters] noise_floor` and the bootstrap quantile of the
paired mean difference's spread on the same examples.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.git import GitError, git
from cra.harness.gold import GoldSymbol
from cra.harness.plan import InvalidPlan, parse_plan
from cra.harness.score import Gold, score_plan
from cra.ranker.metrics import PRIMARY as RANKER_PRIMARY

PRIMARY: dict[str, tuple[str, ...]] = {
    "scope": ("file_recall", "file_precision"),
    "precision": ("symbol_recall", "symbol_precision"),
    "planning": ("alignment",),
    "execute-code": ("patch_applies", "tests_pass"),
    "scope-ranker": RANKER_PRIMARY,
}
DEFAULT_PRIMARY = ("token_f1",)

_PATH = re.compile(r"[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*\.[A-Za-z0-9]+")
_SYMBOL = re.compile(r"[A-Za-z0-9_./\-]+::[A-Za-z_][\w.]*|[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*")


def primary_metrics(kind: str) -> tuple[str, ...]:
    """The metrics no promotion may regress, for an adapter named `kind`."""
    return PRIMARY.get(kind, DEFAULT_PRIMARY)


@dataclass(frozen=True)
class Reference:
    """What an output is scored against: the reference answer, and the task's gold
    files and symbols when the task is in `raw.db`."""

    text: str
    files: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    repo_dir: Path | None = None
    parent: str | None = None
    task_id: str | None = None
    verified: bool = False  # validation proved the task: its patches can be graded


def _prf(predicted: set[str], gold: set[str]) -> tuple[float, float]:
    hits = len(predicted & gold)
    precision = hits / len(predicted) if predicted else (1.0 if not gold else 0.0)
    recall = hits / len(gold) if gold else 1.0
    return precision, recall


def _json_list(text: str) -> set[str] | None:
    """The non-empty items of an output that is a JSON list; None when it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return {str(x).strip() for x in data if str(x).strip()} if isinstance(data, list) else None


def output_files(text: str) -> set[str]:
    """File paths an output names (a JSON list, lines, or paths in prose)."""
    listed = _json_list(text)
    if listed is not None:
        return listed
    return {m.removeprefix("./") for m in _PATH.findall(text or "")}


def output_symbols(text: str) -> set[str]:
    """Symbols an output names (`path::qualname` or dotted names)."""
    listed = _json_list(text)
    return listed if listed is not None else set(_SYMBOL.findall(text or ""))


def _symbol_match(pred: set[str], gold: set[str]) -> tuple[float, float]:
    def bare(s: str) -> str:
        return s.split("::", 1)[-1].rsplit(".", 1)[-1]

    hit_pred = {p for p in pred if p in gold or bare(p) in {bare(g) for g in gold}}
    hit_gold = {g for g in gold if g in pred or bare(g) in {bare(p) for p in pred}}
    precision = len(hit_pred) / len(pred) if pred else (1.0 if not gold else 0.0)
    recall = len(hit_gold) / len(gold) if gold else 1.0
    return precision, recall


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _token_f1(output: str, reference: str) -> float:
    out, ref = _tokens(output), _tokens(reference)
    if not out or not ref:
        return float(out == ref)
    common = sum(min(out.count(t), ref.count(t)) for t in set(out))
    if not common:
        return 0.0
    p, r = common / len(out), common / len(ref)
    return 2 * p * r / (p + r)


def _plan_score(output: str, ref: Reference) -> dict[str, float]:
    files, symbols = list(ref.files), list(ref.symbols)
    if not files:
        try:
            gold_plan = parse_plan(ref.text)
            files = [s.file for s in gold_plan.steps]
            symbols = [f"{s.file}::{sym}" for s in gold_plan.steps for sym in s.symbols]
        except InvalidPlan:
            files = sorted(output_files(ref.text))
    gold = Gold.build(
        [(f, None) for f in dict.fromkeys(files)],
        [GoldSymbol(*_path_and_name(s), "modified") for s in symbols if "::" in s],
    )
    try:
        plan = parse_plan(output)
    except InvalidPlan:
        return {"alignment": 0.0, "file_recall": 0.0, "symbol_recall": 0.0, "valid": 0.0}
    score = score_plan(plan, gold, {})
    return {
        "alignment": score.alignment,
        "file_recall": score.file_recall,
        "symbol_recall": score.symbol_recall,
        "valid": 1.0,
    }


def extract_patch(output: str) -> str | None:
    """The unified diff in a model's output (from its first `diff --git` or `--- `
    line), ending in a newline; None when the output holds none."""
    start = output.find("diff --git")
    if start < 0:
        start = output.find("--- ")
    if start < 0:
        return None
    patch = output[start:]
    return patch if patch.endswith("\n") else patch + "\n"


def _patch_applies(output: str, ref: Reference) -> dict[str, float]:
    patch = extract_patch(output)
    if patch is None or ref.repo_dir is None or ref.parent is None:
        return {"patch_applies": 0.0}
    with tempfile.TemporaryDirectory(prefix="cra-patch-") as tmp:
        worktree = Path(tmp) / "wt"
        try:
            git("worktree", "add", "--detach", str(worktree), ref.parent, cwd=ref.repo_dir)
        except GitError:
            return {"patch_applies": 0.0}
        try:
            git("apply", "--check", "-", cwd=worktree, input=patch)
            applies = True
        except GitError:
            applies = False
        finally:
            with suppress(GitError):
                git("worktree", "remove", "--force", str(worktree), cwd=ref.repo_dir)
    return {"patch_applies": float(applies)}


def score_output(kind: str, output: str, ref: Reference) -> dict[str, float]:
    """Every metric of `kind` for one output."""
    output = output or ""
    if kind == "scope":
        gold = set(ref.files) or output_files(ref.text)
        precision, recall = _prf(output_files(output), gold)
        return {"file_recall": recall, "file_precision": precision}
    if kind == "precision":
        gold = set(ref.symbols) or output_symbols(ref.text)
        precision, recall = _symbol_match(output_symbols(output), gold)
        return {"symbol_recall": recall, "symbol_precision": precision}
    if kind == "planning":
        return _plan_score(output, ref)
    if kind == "execute-code":
        return _patch_applies(output, ref)
    return {
        "token_f1": _token_f1(output, ref.text),
        "exact_match": float(output.strip() == ref.text.strip()),
    }


def mean_metrics(per_example: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the examples that have it."""
    keys = sorted({k for row in per_example for k in row})
    out: dict[str, float] = {}
    for key in keys:
        values = [row[key] for row in per_example if key in row]
        out[key] = sum(values) / len(values) if values else 0.0
    return out


def bootstrap_floor(
    diffs: Sequence[float], *, samples: int, quantile: float, seed: int = 0
) -> float:
    """How far the mean of `diffs` moves by chance: the `quantile` of |resampled mean -
    mean| over `samples` bootstrap resamples (0 with no samples or fewer than 2 values)."""
    if samples <= 0 or len(diffs) < 2:
        return 0.0
    rng = random.Random(seed)  # noqa: S311 - reproducible resampling, not secrecy
    n = len(diffs)
    mean = sum(diffs) / n
    spread = sorted(
        abs(sum(diffs[rng.randrange(n)] for _ in range(n)) / n - mean) for _ in range(samples)
    )
    return spread[min(int(quantile * samples), samples - 1)]


def compare(
    kind: str,
    candidate: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    floor: float,
    samples: int,
    quantile: float,
) -> dict[str, Any]:
    """Compare two eval results on the same holdout metric by metric; `regressions`
    lists the primary metrics whose drop exceeds that metric's noise floor. The primary
    metrics are those the candidate's eval names (`primary`), else those of `kind`."""
    out: dict[str, Any] = {"metrics": {}, "regressions": []}
    for metric in tuple(candidate.get("primary") or ()) or primary_metrics(kind):
        new = candidate["metrics"].get(metric)
        old = baseline["metrics"].get(metric)
        if new is None or old is None:
            continue
        a = candidate.get("per_example", {}).get(metric, [])
        b = baseline.get("per_example", {}).get(metric, [])
        paired = [x - y for x, y in zip(a, b, strict=False)] if len(a) == len(b) else []
        noise = max(floor, bootstrap_floor(paired, samples=samples, quantile=quantile))
        delta = new - old
        out["metrics"][metric] = {
            "candidate": new,
            "baseline": old,
            "delta": delta,
            "noise_floor": noise,
        }
        if delta < -noise:
            out["regressions"].append(metric)
    return out


def _path_and_name(symbol: str) -> tuple[str, str]:
    """`PATH::QUALNAME` split at its first `::`."""
    path, _, qualname = symbol.partition("::")
    return path, qualname
