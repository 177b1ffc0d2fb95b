"""`cra train --adapter scope-ranker`: fine-tune the encoder on ranker rows, choose how it
is mixed with BM25 and the recency prior on the newest part of the training period, and
register the result as a candidate version of kind `ranker`.

Rows come from a dataset's `train.jsonl` (`--dataset`), else straight from the mined
history of the workspace's repositories, whose newest `[curate] eval_share` is held out
for `cra adapter eval` and never trained on. Within the training rows the newest
`[ranker] validation_share` chooses the mix; the rest trains the encoder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cra.adapters.names import RANKER_METHOD
from cra.adapters.registry import Registration, Version, discard_staged, register
from cra.config import RankerSettings
from cra.datasets_store import get_dataset
from cra.db.repos import repo_names
from cra.errors import UsageError
from cra.fsutil import atomic_write_text
from cra.ranker.base import load_encoder, ranker_base_dir
from cra.ranker.evaluate import (
    choose_mix,
    mix_label,
    score_rows,
    workspace_rows,
    workspace_snapshots,
)
from cra.ranker.fit import FitResult, Pair, StepHook, fit
from cra.ranker.history import Snapshots, holdout_split
from cra.ranker.metrics import mean
from cra.ranker.model import ENCODER_DIR, RANKER_JSON, Mix, Ranker
from cra.ranker.runtime import export_encoder
from cra.ranker.steps import stamp_run, step_recorder
from cra.ranker_rows import RANKER_ADAPTER, RankerRow, read_ranker_rows
from cra.workspace import Workspace

Progress = Callable[[int, int], None]
Echo = Callable[[str], None]
REPRESENTATION = "path, module docstring, top-level signatures (cra.ranker.text v1)"


@dataclass(frozen=True)
class RankerTrainOptions:
    """What a ranker run was asked to do; None means the `[ranker]` setting."""

    adapter: str = RANKER_ADAPTER
    dataset_id: str | None = None
    repos: tuple[str, ...] = ()
    base: Path | None = None
    epochs: float | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs <= 0:
            raise UsageError(f"--epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.batch_size is not None and self.batch_size < 2:
            raise UsageError(
                f"--batch-size must be >= 2 for in-batch negatives, got {self.batch_size}"
            )
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise UsageError(f"--learning-rate must be > 0, got {self.learning_rate}")


def ranker_hyperparams(
    settings: RankerSettings, options: RankerTrainOptions, holdout_share: float
) -> dict[str, Any]:
    """The run's hyperparameters: `[ranker]` overridden by the options."""
    return {
        "loss": "MultipleNegativesRankingLoss",
        "epochs": options.epochs or settings.epochs,
        "max_steps": options.max_steps,
        "batch_size": options.batch_size or settings.batch_size,
        "learning_rate": options.learning_rate or settings.learning_rate,
        "hard_negatives": settings.hard_negatives,
        "candidates": settings.candidates,
        "max_seq_length": settings.max_seq_length,
        "validation_share": settings.validation_share,
        "holdout_share": holdout_share,
        "seed": settings.seed,
        "representation": REPRESENTATION,
    }


@dataclass(frozen=True)
class RankerTrainResult:
    """The registered version and the run's metrics."""

    version: Version
    metrics: dict[str, Any]


def _rows(workspace: Workspace, options: RankerTrainOptions, share: float) -> tuple[list, Any]:
    """(training rows, dataset or None); the holdout of a history run is left out."""
    if options.dataset_id:
        with closing(workspace.raw_db()) as conn:
            dataset = get_dataset(conn, workspace.root, options.dataset_id)
        rows = read_ranker_rows(dataset, "train", adapter=options.adapter)
        if not rows:
            raise UsageError(f"dataset {dataset.id} has no ranker rows for {options.adapter!r}")
        return rows, dataset
    repos = list(options.repos)
    if not repos:
        with closing(workspace.raw_db()) as conn:
            repos = repo_names(conn)
    if not repos:
        raise UsageError(
            "no repositories to train a ranker on", hint="pack one with `cra repo pack`"
        )
    rows = workspace_rows(workspace, repos, negatives=10)
    if len(rows) < 3:
        raise UsageError(f"{len(rows)} ranker rows are too few to train, choose and hold out on")
    older, _ = holdout_split(rows, share)
    return older, None


def pairs_of(snapshots: Snapshots, rows: Sequence[RankerRow], negatives: int) -> list[Pair]:
    """One pair per (row, changed file), each with `negatives` hard negatives (repeated
    when a row has fewer; other rows' files when it has none)."""
    pairs: list[Pair] = []
    for row in rows:
        view = snapshots.view(row.repo, row.parent_sha)
        negs = [view.texts[p] for p in row.negatives if p in view.texts]
        if not negs:
            negs = [view.texts[p] for p in view.sources if p not in row.positives][:1]
        for path in row.positives:
            if path not in view.texts:
                continue
            chosen = tuple(negs[i % len(negs)] for i in range(negatives)) if negs else ()
            pairs.append(Pair(row.query, view.texts[path], chosen))
    width = min((len(p.negatives) for p in pairs), default=0)
    return [Pair(p.query, p.positive, p.negatives[:width]) for p in pairs]


def _save(staging: Path, ranker: Ranker, hp: dict[str, Any]) -> Path:
    """The version folder: the encoder, its ONNX export where it can be made, and
    `ranker.json`."""
    folder = staging / "version"
    ranker.encoder.save(str(folder / ENCODER_DIR))
    export_encoder(ranker.encoder, folder)
    config = {
        "weight": ranker.weight,
        "prior_weight": ranker.prior_weight,
        "half_life": ranker.half_life,
        "max_seq_length": hp["max_seq_length"],
        "candidates": hp["candidates"],
        "representation": REPRESENTATION,
    }
    atomic_write_text(folder / RANKER_JSON, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def _lineage(rows: Sequence[RankerRow], dataset: Any, repos: Sequence[str]) -> dict[str, Any]:
    return {
        "dataset": dataset.id if dataset else None,
        "dataset_sha256": dataset.sha256 if dataset else None,
        "source": "dataset" if dataset else "mined history",
        "repos": list(repos),
        "train_rows": len(rows),
        "first_task": rows[0].task_id,
        "last_task": rows[-1].task_id,
        "last_authored_at": rows[-1].authored_at,
    }


def train_ranker(
    workspace: Workspace,
    options: RankerTrainOptions,
    *,
    progress: Progress | None = None,
    echo: Echo | None = None,
) -> RankerTrainResult:
    """Train, weigh and register a ranker (see the module docstring)."""
    say = echo or (lambda _m: None)
    settings = workspace.config.settings.ranker
    base = options.base.absolute() if options.base else None
    base = ranker_base_dir(str(base) if base else settings.base, workspace.root)
    share = workspace.config.settings.curate.eval_share
    rows, dataset = _rows(workspace, options, share)
    rows = sorted(rows, key=lambda r: (r.authored_at, r.task_id))
    repos = sorted({r.repo for r in rows})
    hp = {**ranker_hyperparams(settings, options, share), "repos": repos}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    run_id = f"{options.adapter}-{stamp}"
    with closing(workspace.curated_db()) as curated, closing(workspace.raw_db()) as steps:
        snaps = workspace_snapshots(workspace, curated, repos)
        hook = step_recorder(steps, run_id, options.adapter)
        fitted = fit_ranker(snaps, rows, hp, base, progress=progress, echo=say, on_step=hook)
    staging = workspace.training_dir / "runs" / f".{options.adapter}-{stamp}"
    metrics = fitted.metrics
    try:
        folder = _save(staging, fitted.ranker, hp)
        version = register(
            workspace,
            Registration(
                name=options.adapter,
                staged=folder,
                base_model=base,
                dataset_id=dataset.id if dataset else None,
                method=RANKER_METHOD,
                hyperparams=hp,
                train_metrics=metrics,
                lineage=_lineage(rows, dataset, repos),
            ),
        )
    finally:
        discard_staged(staging)
    with closing(workspace.raw_db()) as steps:
        stamp_run(steps, run_id, version.version)
    say(f"registered {version.ref} as a candidate at {version.path}")
    return RankerTrainResult(version, metrics)


@dataclass(frozen=True)
class FittedRanker:
    """A fine-tuned encoder with its chosen weight, and the run's metrics."""

    ranker: Ranker
    metrics: dict[str, Any]


def fit_ranker(
    snaps: Snapshots,
    rows: Sequence[RankerRow],
    hp: dict[str, Any],
    base: Path,
    *,
    progress: Progress | None = None,
    echo: Echo | None = None,
    on_step: StepHook | None = None,
) -> FittedRanker:
    """Fine-tune the encoder at `base` on the older rows (hyperparameters `hp`, as
    `ranker_hyperparams` writes them) and choose its mix with BM25 and the recency prior
    on the newest `validation_share` of each repository's rows; nothing is registered."""
    say = echo or (lambda _m: None)
    rows = sorted(rows, key=lambda r: (r.authored_at, r.task_id))
    fit_rows, val_rows = holdout_split(rows, hp["validation_share"])
    if not fit_rows or not val_rows:
        raise UsageError(f"{len(rows)} ranker rows are too few to train and choose a mix on")
    say(f"{len(fit_rows)} rows train the encoder, {len(val_rows)} choose its mix ({base})")
    encoder = load_encoder(base, max_seq_length=hp["max_seq_length"])
    pairs = pairs_of(snaps, fit_rows, hp["hard_negatives"])
    if not pairs:
        raise UsageError("no training pair: no row's changed file is in its snapshot")
    fitted = fit(
        encoder,
        pairs,
        epochs=hp["epochs"],
        batch_size=hp["batch_size"],
        learning_rate=hp["learning_rate"],
        seed=hp["seed"],
        max_steps=hp["max_steps"],
        progress=progress,
        on_step=on_step,
    )
    scored = score_rows(Ranker(encoder, 1.0), snaps, val_rows, rows, candidates=hp["candidates"])
    mix, grid = choose_mix(scored)
    bm25 = mean([s.bm25_only() for s in scored])["mrr"]
    say(f"mix: {mix_label(mix)} (validation MRR {grid[mix_label(mix)]:.3f}, BM25 {bm25:.3f})")
    metrics = _train_metrics(fitted, len(pairs), mix, grid, scored)
    return FittedRanker(Ranker(encoder, mix.weight, mix.prior_weight, mix.half_life), metrics)


def _train_metrics(
    fitted: FitResult, pairs: int, mix: Mix, grid: dict[str, float], scored: Sequence
) -> dict[str, Any]:
    return {
        "backend": "sentence-transformers (cpu)",
        "pairs": pairs,
        "steps": fitted.steps,
        "losses": list(fitted.losses),
        "first_loss": fitted.losses[0] if fitted.losses else None,
        "last_loss": fitted.losses[-1] if fitted.losses else None,
        "seconds": fitted.seconds,
        "weight": mix.weight,
        "prior_weight": mix.prior_weight,
        "half_life": mix.half_life,
        "mix": mix_label(mix),
        "validation_rows": len(scored),
        "validation_mrr_by_mix": grid,
        "validation_bm25": mean([s.bm25_only() for s in scored]),
        "validation_ranker": mean([s.at(mix) for s in scored]),
    }
