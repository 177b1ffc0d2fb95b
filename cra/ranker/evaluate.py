"""`cra adapter eval` of a ranker: recall@1/@5/@10 and MRR on the chronological holdout,
next to BM25 alone and a frequency prior (the files changed most often before the
task). The gate's base is the stronger of the two on the holdout's MRR."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from cra.adapters.registry import Version, store_eval
from cra.datasets_store import get_dataset
from cra.errors import UsageError
from cra.fsutil import now_iso
from cra.ranker.history import Snapshots, history_rows, holdout_split, prior_counts
from cra.ranker.metrics import METRICS, PRIMARY, mean, prior_ranking, rank_metrics
from cra.ranker.model import Ranker, load_ranker, mixed
from cra.ranker_rows import RankerRow, read_ranker_rows
from cra.workspace import Workspace

Progress = Callable[[int, int], None]
WEIGHTS = tuple(round(i / 10, 1) for i in range(11))


@dataclass(frozen=True)
class Scoring:
    """One row's candidates with both signals, and the prior's order of every file."""

    row: RankerRow
    paths: tuple[str, ...]
    sims: np.ndarray
    bm25: np.ndarray
    prior: tuple[str, ...]

    def at(self, weight: float) -> dict[str, float]:
        """The row's metrics when the two signals are mixed at `weight`."""
        scores = mixed(self.sims, self.bm25, weight)
        order = sorted(range(len(self.paths)), key=lambda i: (-scores[i], i))
        return rank_metrics([self.paths[i] for i in order], self.row.positives)

    def bm25_only(self) -> dict[str, float]:
        """The row's metrics in BM25's own order."""
        return rank_metrics(self.paths, self.row.positives)

    def prior_only(self) -> dict[str, float]:
        """The row's metrics for the frequency prior."""
        return rank_metrics(self.prior, self.row.positives)


def score_rows(
    ranker: Ranker,
    snapshots: Snapshots,
    rows: Sequence[RankerRow],
    history: Sequence[RankerRow],
    *,
    candidates: int,
    progress: Progress | None = None,
) -> list[Scoring]:
    """Each row's candidates at its parent snapshot, scored by the encoder and BM25."""
    out = []
    for i, row in enumerate(rows, start=1):
        view = snapshots.view(row.repo, row.parent_sha)
        cands = view.candidates(row.query, candidates)
        sims = ranker.similarities(row.query, cands).astype(np.float64)
        bm25 = np.asarray([c.bm25 for c in cands], dtype=np.float64)
        prior = prior_ranking(view.sources, prior_counts(history, row.authored_at, row.repo))
        out.append(Scoring(row, tuple(c.path for c in cands), sims, bm25, tuple(prior)))
        if progress:
            progress(i, len(rows))
    return out


def choose_weight(scored: Sequence[Scoring]) -> tuple[float, dict[str, float]]:
    """The weight of the best mean MRR (ties: the smaller weight, more BM25), and the
    mean MRR at each weight."""
    grid = {str(w): mean([s.at(w) for s in scored])["mrr"] for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (grid[str(w)], -w))
    return best, grid


def _per_example(values: Sequence[dict[str, float]]) -> dict[str, list[float]]:
    return {m: [v[m] for v in values] for m in METRICS}


def holdout_rows(
    workspace: Workspace, version: Version, dataset_id: str | None
) -> tuple[str, list[RankerRow], list[RankerRow]]:
    """(holdout key, holdout rows, every row for the prior) of the version's eval."""
    chosen = dataset_id or version.dataset_id
    if chosen:
        with closing(workspace.raw_db()) as conn:
            dataset = get_dataset(conn, workspace.root, chosen)
        held = read_ranker_rows(dataset, "eval", adapter=version.name)
        return dataset.holdout_key(), held, read_ranker_rows(dataset, "train") + held
    repos = list(version.hyperparams.get("repos") or [])
    share = float(version.hyperparams.get("holdout_share", 0.2))
    rows = workspace_rows(workspace, repos, negatives=0)
    _, held = holdout_split(rows, share)
    digest = hashlib.sha256("\n".join(r.task_id for r in held).encode()).hexdigest()[:16]
    return f"history:{'+'.join(repos)}:{digest}", held, rows


def workspace_rows(workspace: Workspace, repos: Sequence[str], *, negatives: int) -> list:
    """The history rows of `repos` in `workspace` (see `history_rows`)."""
    with closing(workspace.raw_db()) as raw, closing(workspace.curated_db()) as curated:
        return history_rows(
            raw, workspace_snapshots(workspace, curated, repos), repos, negatives=negatives
        )


def workspace_snapshots(workspace: Workspace, curated: Any, repos: Sequence[str]) -> Snapshots:
    """Snapshots of `repos`' packaged clones."""
    return Snapshots(curated, {r: workspace.repos_dir / r / "repo" for r in repos})


def evaluate_ranker(
    workspace: Workspace,
    version: Version,
    *,
    dataset_id: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate ranker `version` on its holdout, store the result on it and return it."""
    key, held, history = holdout_rows(workspace, version, dataset_id)
    held = held[:limit] if limit is not None else held
    if not held:
        raise UsageError(f"{version.ref} has no holdout rows to evaluate on")
    ranker = load_ranker(version.path)
    k = int(version.hyperparams.get("candidates", 50))
    repos = sorted({r.repo for r in history})
    with closing(workspace.curated_db()) as curated:
        snaps = workspace_snapshots(workspace, curated, repos)
        scored = score_rows(ranker, snaps, held, history, candidates=k, progress=progress)
    tuned = [s.at(ranker.weight) for s in scored]
    lexical = [s.bm25_only() for s in scored]
    prior = [s.prior_only() for s in scored]
    base, base_name = (lexical, "bm25")
    if mean(prior)["mrr"] > mean(lexical)["mrr"]:
        base, base_name = (prior, "frequency prior")
    result = {
        "dataset_id": version.dataset_id if dataset_id is None else dataset_id,
        "holdout": key,
        "n": len(held),
        "backend": "sentence-transformers (cpu)",
        "primary": list(PRIMARY),
        "weight": ranker.weight,
        "metrics": mean(tuned),
        "base": base_name,
        "base_metrics": mean(base),
        "bm25_metrics": mean(lexical),
        "prior_metrics": mean(prior),
        "per_example": _per_example(tuned),
        "base_per_example": _per_example(base),
        "samples": [{"task_id": s.row.task_id, "gold": list(s.row.positives)} for s in scored[:5]],
        "evaluated_at": now_iso(),
    }
    store_eval(workspace, version.name, version.version, key, result)
    return result
