"""Fine-tune the encoder: MultipleNegativesRankingLoss over (query, changed file, BM25
hard negatives) with in-batch negatives, on the CPU, seeded; every step's loss kept."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Progress = Callable[[int, int], None]
StepHook = Callable[[int, float, float, float], None]
"""Called after each step with (step, epoch, loss, learning rate)."""


@dataclass(frozen=True)
class Pair:
    """One training example: a query, the text of a file it changed, and the texts of
    files it did not change (exactly as many for every pair of a run)."""

    query: str
    positive: str
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class FitResult:
    """Per-step losses and how long the steps took."""

    losses: tuple[float, ...]
    steps: int
    seconds: float


def seed_everything(seed: int) -> None:
    """Seed Python and torch; deterministic kernels where torch has them."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def fit(
    encoder: Any,
    pairs: Sequence[Pair],
    *,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    seed: int,
    max_steps: int | None = None,
    progress: Progress | None = None,
    on_step: StepHook | None = None,
) -> FitResult:
    """Train `encoder` in place on `pairs` and return the loss of every step (each also
    handed to `on_step` as it is taken)."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    seed_everything(seed)
    loss_fn = MultipleNegativesRankingLoss(encoder)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=learning_rate)
    order = list(range(len(pairs)))
    rng = random.Random(seed)  # noqa: S311 - a reproducible batch order, not secrecy
    per_epoch = max(1, -(-len(pairs) // batch_size))
    total = max(1, round(per_epoch * epochs))
    if max_steps is not None:
        total = min(total, max_steps)
    losses: list[float] = []
    encoder.train()
    started = time.perf_counter()
    batches: list[list[int]] = []
    while len(losses) < total:
        if not batches:
            rng.shuffle(order)
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        batch = [pairs[i] for i in batches.pop(0)]
        columns = [[p.query for p in batch], [p.positive for p in batch]]
        columns += [[p.negatives[j] for p in batch] for j in range(len(batch[0].negatives))]
        features = [encoder.preprocess(texts) for texts in columns]
        loss = loss_fn(features, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(round(float(loss.detach()), 6))
        if on_step is not None:
            rate = float(optimizer.param_groups[0]["lr"])
            on_step(len(losses), round(len(losses) / per_epoch, 4), losses[-1], rate)
        if progress is not None:
            progress(len(losses), total)
    encoder.eval()
    return FitResult(tuple(losses), len(losses), round(time.perf_counter() - started, 3))
