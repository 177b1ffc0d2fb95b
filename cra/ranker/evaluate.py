"""`cra adapter eval` of a ranker: recall@1/@5/@10 and MRR on the chronological holdout,
next to BM25 alone and a frequency prior (the files changed most often before the
task). The gate's base is the stronger of the two on the holdout's MRR.

Training chooses how the ranker mixes the encoder, BM25 and the recency prior here too:
the mix of the best mean MRR on its validation rows (`choose_mix`)."""

from __future__ import annotations

import bisect
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
from cra.ranker.model import Mix, Ranker, load_ranker
from cra.ranker.prior import HALF_LIVES
from cra.ranker_rows import RankerRow, read_ranker_rows
from cra.workspace import Workspace

Progress = Callable[[int, int], None]
WEIGHTS = tuple(round(i / 10, 1) for i in range(11))
MIXES = (
    *(Mix(w) for w in WEIGHTS),
    *(
        Mix(w, p, h)
        for h in HALF_LIVES
        for w in WEIGHTS
        for p in WEIGHTS
        if p > 0 and w + p <= 1.0 + 1e-9
    ),
)
"""The mixes training chooses from: the encoder with BM25 alone, and with the recency
prior at each half-life."""


@dataclass(frozen=True)
class Scoring:
    """One row's candidates with the encoder's, BM25's and the recency prior's scores, and
    the frequency prior's order of every file."""

    row: RankerRow
    paths: tuple[str, ...]
    sims: np.ndarray
    bm25: np.ndarray
    prior: tuple[str, ...]
    recency: dict[float, np.ndarray]
    """The candidates' recency scores at each half-life training may choose."""

    def at(self, mix: Mix) -> dict[str, float]:
        """The row's metrics when the signals are mixed as `mix` says."""
        recent = self.recency[mix.half_life] if mix.prior_weight and mix.half_life else None
        prior = np.zeros(len(self.paths)) if recent is None else recent
        scores = mix.scores(self.sims, self.bm25, prior)
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
    """Each row's candidates at its parent snapshot, scored by the encoder and BM25, with
    the changes of the rows of `history` authored before it."""
    earlier = ChangeHistory(history)
    half_lives = {*HALF_LIVES, *([ranker.half_life] if ranker.half_life else [])}
    out = []
    for i, row in enumerate(rows, start=1):
        view = snapshots.view(row.repo, row.parent_sha)
        cands = view.candidates(row.query, candidates)
        sims = ranker.similarities(row.query, cands).astype(np.float64)
        bm25 = np.asarray([c.bm25 for c in cands], dtype=np.float64)
        prior = prior_ranking(view.sources, prior_counts(history, row.authored_at, row.repo))
        paths = tuple(c.path for c in cands)
        changes = earlier.before(row)
        recent = {h: Mix(1.0, 1.0, h).prior(paths, changes) for h in half_lives}
        out.append(Scoring(row, paths, sims, bm25, tuple(prior), recent))
        if progress:
            progress(i, len(rows))
    return out


class ChangeHistory:
    """The positives of each repository's rows, oldest first, cut at any row's time."""

    def __init__(self, rows: Sequence[RankerRow]) -> None:
        self._rows: dict[str, list[RankerRow]] = {}
        for row in sorted(rows, key=lambda r: (r.authored_at, r.task_id)):
            self._rows.setdefault(row.repo, []).append(row)
        self._times = {repo: [r.authored_at for r in rs] for repo, rs in self._rows.items()}

    def before(self, row: RankerRow) -> tuple[tuple[str, ...], ...]:
        """The files each row of `row`'s repository authored before it changed."""
        mine = self._rows.get(row.repo, [])
        cut = bisect.bisect_left(self._times.get(row.repo, []), row.authored_at)
        return tuple(r.positives for r in mine[:cut])


def mix_label(mix: Mix) -> str:
    """`mix` in a few words, as training reports its choice."""
    if not mix.prior_weight:
        return f"encoder {mix.weight}, BM25 {round(1 - mix.weight, 1)}"
    lexical = round(1 - mix.weight - mix.prior_weight, 1)
    return (
        f"encoder {mix.weight}, recency {mix.prior_weight} (half-life {mix.half_life:g} "
        f"commits), BM25 {lexical}"
    )


def choose_mix(scored: Sequence[Scoring]) -> tuple[Mix, dict[str, float]]:
    """The mix of the best mean MRR (ties: the one listed first in `MIXES`, so no prior
    and less encoder first), and the mean MRR of each mix by its label."""
    grid = {mix_label(m): mean([s.at(m) for s in scored])["mrr"] for m in MIXES}
    best = max(range(len(MIXES)), key=lambda i: (grid[mix_label(MIXES[i])], -i))
    return MIXES[best], grid


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
    tuned = [s.at(ranker.mix) for s in scored]
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
        "prior_weight": ranker.prior_weight,
        "half_life": ranker.half_life,
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
