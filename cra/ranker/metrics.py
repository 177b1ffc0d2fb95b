"""Ranking metrics on a task's gold files: recall@k and the reciprocal rank."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

CUTOFFS = (1, 5, 10)
METRICS = (*(f"recall@{k}" for k in CUTOFFS), "mrr")
PRIMARY = ("recall@5", "mrr")
"""The metrics no promotion of a ranker may regress."""


def rank_metrics(ranked: Sequence[str], gold: Iterable[str]) -> dict[str, float]:
    """recall@1/@5/@10 (share of the gold files in the top k) and MRR (1 / rank of the
    first gold file; 0 when none is ranked)."""
    wanted = set(gold)
    if not wanted:
        raise ValueError("rank_metrics needs at least one gold file")
    out = {f"recall@{k}": len(wanted & set(ranked[:k])) / len(wanted) for k in CUTOFFS}
    first = next((i for i, p in enumerate(ranked, start=1) if p in wanted), None)
    out["mrr"] = 0.0 if first is None else 1.0 / first
    return out


def prior_ranking(files: Sequence[str], counts: Counter[str]) -> list[str]:
    """`files` by how often each changed before (most first), then by path."""
    return sorted(files, key=lambda p: (-counts.get(p, 0), p))


def mean(values: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over examples (empty for none)."""
    if not values:
        return {}
    return {m: sum(v[m] for v in values) / len(values) for m in values[0]}
