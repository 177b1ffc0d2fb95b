"""Plan-diff alignment: how well a plan targets what the commit really changed.

Components, each in [0, 1]:
- files: precision/recall/F1 of the plan's step files against the non-test Python files
  the commit changed (a renamed file counts under its old or its new path);
- symbols: precision/recall/F1 of the plan's symbols against the definitions the diff
  touches (innermost enclosing definitions of deleted and added lines, before and
  after). A plan symbol matches a gold one in the same file by qualified name
  (`Class.method`) or by bare name (`method`); `path::qualname` names the file itself;
- order: over pairs of plan steps whose files depend on each other in the parent's
  import graph (transitively), the share ordered dependency-first.

The alignment score is the weighted mean of the components that are defined (symbols
is undefined when the diff touches no definition; order when no step pair depends on
another), so a perfect plan scores 1.0. Weights come from `[score]` in `cra.toml`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cra.harness.gold import GoldSymbol
from cra.harness.plan import Plan


@dataclass(frozen=True)
class Weights:
    """Relative weights of the alignment components."""

    files: float = 0.4
    symbols: float = 0.4
    order: float = 0.2

    def __post_init__(self) -> None:
        for name in ("files", "symbols", "order"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"weight {name} must be a number >= 0, got {value!r}")
        if self.files + self.symbols + self.order <= 0:
            raise ValueError("at least one alignment weight must be > 0")

    def as_dict(self) -> dict[str, float]:
        """The weights as a JSON-ready mapping."""
        return {"files": self.files, "symbols": self.symbols, "order": self.order}


@dataclass(frozen=True)
class Gold:
    """The ground truth of a task: files (new path → accepted names) and symbols."""

    files: Mapping[str, frozenset[str]]
    symbols: tuple[GoldSymbol, ...]

    @classmethod
    def build(cls, files: Iterable[tuple[str, str | None]], symbols: Iterable[GoldSymbol]) -> Gold:
        """Gold from (path, old path or None) pairs and the touched symbols."""
        names = {path: frozenset({path} | ({old} if old else set())) for path, old in files}
        return cls(names, tuple(symbols))

    def canonical(self, path: str) -> str | None:
        """The gold path that `path` names (old paths of renames included)."""
        clean = path.strip().removeprefix("./")
        for gold, names in self.files.items():
            if clean in names:
                return gold
        return None


@dataclass(frozen=True)
class PlanScore:
    """Every component of a plan's alignment, and the weighted score."""

    file_precision: float
    file_recall: float
    file_f1: float
    symbol_precision: float
    symbol_recall: float
    symbol_f1: float
    symbols_defined: bool
    order_score: float | None
    alignment: float
    weights: Weights
    details: dict[str, object] = field(default_factory=dict)


def _prf(hits_pred: int, n_pred: int, hits_gold: int, n_gold: int) -> tuple[float, float, float]:
    precision = hits_pred / n_pred if n_pred else (1.0 if n_gold == 0 else 0.0)
    recall = hits_gold / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _plan_symbols(plan: Plan, gold: Gold) -> set[tuple[str, str]]:
    """(file, symbol) pairs the plan names, with files mapped onto gold paths."""
    named: set[tuple[str, str]] = set()
    for step in plan.steps:
        for symbol in step.symbols:
            file = step.file
            name = symbol.strip()
            if "::" in name:
                file, name = name.split("::", 1)
            if name:
                named.add((gold.canonical(file) or file.strip(), name))
    return named


def _matches(named: tuple[str, str], sym: GoldSymbol) -> bool:
    file, name = named
    if file != sym.path:
        return False
    return name == sym.qualname or name == sym.qualname.rsplit(".", 1)[-1]


def score_plan(
    plan: Plan,
    gold: Gold,
    deps: Mapping[str, set[str]],
    weights: Weights | None = None,
) -> PlanScore:
    """Score `plan` against `gold`; `deps` maps each file to its transitive imports."""
    weights = weights or Weights()
    plan_files = list(dict.fromkeys(s.file for s in plan.steps))
    canon = {f: gold.canonical(f) for f in plan_files}
    file_hits = {c for c in canon.values() if c is not None}
    fp, fr, ff = _prf(
        sum(1 for c in canon.values() if c is not None),
        len(plan_files),
        len(file_hits),
        len(gold.files),
    )

    named = _plan_symbols(plan, gold)
    matched_named = {n for n in named if any(_matches(n, g) for g in gold.symbols)}
    matched_gold = {g for g in gold.symbols if any(_matches(n, g) for n in named)}
    symbols_defined = bool(gold.symbols)
    sp, sr, sf = _prf(len(matched_named), len(named), len(matched_gold), len(gold.symbols))

    correct = wrong = 0
    steps = list(plan.steps)
    for i, first in enumerate(steps):
        for second in steps[i + 1 :]:
            a = canon.get(first.file) or first.file
            b = canon.get(second.file) or second.file
            if a == b:
                continue
            b_needs_a = a in deps.get(b, ())
            a_needs_b = b in deps.get(a, ())
            if b_needs_a and not a_needs_b:
                correct += 1
            elif a_needs_b and not b_needs_a:
                wrong += 1
    order = correct / (correct + wrong) if correct + wrong else None

    parts = [(weights.files, ff)]
    if symbols_defined:
        parts.append((weights.symbols, sf))
    if order is not None:
        parts.append((weights.order, order))
    total = sum(w for w, _ in parts)
    alignment = sum(w * v for w, v in parts) / total if total else 0.0
    return PlanScore(
        file_precision=fp,
        file_recall=fr,
        file_f1=ff,
        symbol_precision=sp,
        symbol_recall=sr,
        symbol_f1=sf,
        symbols_defined=symbols_defined,
        order_score=order,
        alignment=alignment,
        weights=weights,
        details={
            "matched_files": sorted(file_hits),
            "missed_files": sorted(set(gold.files) - file_hits),
            "extra_files": sorted(f for f, c in canon.items() if c is None),
            "matched_symbols": sorted(f"{g.path}::{g.qualname}" for g in matched_gold),
            "missed_symbols": sorted(
                f"{g.path}::{g.qualname}" for g in gold.symbols if g not in matched_gold
            ),
            "ordered_pairs": {"correct": correct, "wrong": wrong},
        },
    )
