"""The scoring API: a trained ranker reorders candidate files for a query, in-process on
the CPU. The score is `weight * encoder + prior_weight * recency + (1 - weight -
prior_weight) * bm25`, each min-max normalised over the candidates (recency: the files the
repository's earlier commits changed, see `cra.ranker.prior`); file embeddings are cached
by blob sha.

A ranker version's folder holds `encoder/` (a sentence-transformers model),
`encoder.onnx` (the same transformer for ONNX Runtime, which serves queries when it is
there, see `cra.ranker.runtime`) and `ranker.json` (the mix of the signals and how texts
were cut).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cra.adapters.registry import active_version
from cra.errors import UsageError
from cra.ranker.base import load_encoder
from cra.ranker.history import Candidate
from cra.ranker.prior import recency
from cra.ranker.runtime import onnx_encoder
from cra.ranker_rows import RANKER_ADAPTER
from cra.workspace import Workspace

ENCODER_DIR = "encoder"
RANKER_JSON = "ranker.json"


@dataclass(frozen=True)
class Mix:
    """How the signals are mixed: the encoder's weight, the recency prior's weight and
    half-life (no prior when its weight is 0), BM25 the rest."""

    weight: float
    prior_weight: float = 0.0
    half_life: float | None = None

    def prior(self, paths: Sequence[str], changes: Sequence[Sequence[str]]) -> np.ndarray:
        """The recency score of each of `paths` (zeros without a prior)."""
        if not self.prior_weight or not self.half_life or not changes:
            return np.zeros(len(paths))
        scores = recency(changes, self.half_life)
        return np.asarray([scores.get(p, 0.0) for p in paths], dtype=np.float64)

    def scores(self, encoder: np.ndarray, bm25: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """The hybrid score of each candidate."""
        lexical = 1.0 - self.weight - self.prior_weight
        return (
            self.weight * normalised(encoder)
            + self.prior_weight * normalised(prior)
            + lexical * normalised(bm25)
        )


@dataclass(frozen=True)
class Scored:
    """A candidate's place: its path, the mixed score and its parts (normalised)."""

    path: str
    score: float
    encoder: float
    bm25: float
    prior: float = 0.0


def normalised(values: np.ndarray) -> np.ndarray:
    """`values` scaled to [0, 1] (all zero when they are all equal)."""
    if values.size == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def _key(candidate: Candidate) -> str:
    return candidate.blob or "text:" + hashlib.sha256(candidate.text.encode()).hexdigest()


@dataclass
class Ranker:
    """An encoder and how it is mixed with BM25 and the recency prior."""

    encoder: Any
    weight: float
    prior_weight: float = 0.0
    half_life: float | None = None
    batch_size: int = 64
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of `texts`, one row each."""
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        out = self.encoder.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def file_embeddings(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Embeddings of the candidates' texts, computed once per blob."""
        todo = {_key(c): c.text for c in candidates if _key(c) not in self._cache}
        if todo:
            for key, vector in zip(todo, self.encode(list(todo.values())), strict=True):
                self._cache[key] = vector
        return np.stack([self._cache[_key(c)] for c in candidates])

    def similarities(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """Cosine similarity of `query` to each candidate."""
        if not candidates:
            return np.zeros(0)
        return self.file_embeddings(candidates) @ self.encode([query])[0]

    @property
    def mix(self) -> Mix:
        """How this ranker mixes its signals."""
        return Mix(self.weight, self.prior_weight, self.half_life)

    def rerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        changes: Sequence[Sequence[str]] = (),
    ) -> list[Scored]:
        """The candidates best first by the hybrid score (ties: BM25's order); `changes`
        are the files each earlier commit of the repository changed, oldest first."""
        if not candidates:
            return []
        sims = self.similarities(query, candidates).astype(np.float64)
        bm25 = np.asarray([c.bm25 for c in candidates], dtype=np.float64)
        prior = self.mix.prior([c.path for c in candidates], changes)
        scores = self.mix.scores(sims, bm25, prior)
        enc, lex, rec = normalised(sims), normalised(bm25), normalised(prior)
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
        return [
            Scored(
                candidates[i].path, float(scores[i]), float(enc[i]), float(lex[i]), float(rec[i])
            )
            for i in order
        ]


def load_ranker(folder: Path) -> Ranker:
    """The ranker saved in `folder` (a registered version's folder)."""
    config_path = folder / RANKER_JSON
    if not config_path.is_file() or not (folder / ENCODER_DIR / "modules.json").is_file():
        raise UsageError(f"{folder} is not a ranker (no {RANKER_JSON} or {ENCODER_DIR}/)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    encoder = load_encoder(folder / ENCODER_DIR, max_seq_length=int(config["max_seq_length"]))
    encoder = onnx_encoder(encoder, folder) or encoder
    half_life = config.get("half_life")
    return Ranker(
        encoder,
        float(config["weight"]),
        prior_weight=float(config.get("prior_weight", 0.0)),
        half_life=None if half_life is None else float(half_life),
    )


def load_active_ranker(workspace: Workspace, name: str = RANKER_ADAPTER) -> Ranker | None:
    """The active version of ranker `name`, loaded; None when no version is active."""
    with closing(workspace.raw_db()) as conn:
        version = active_version(conn, workspace.root, name)
    if version is None:
        return None
    if version.kind != "ranker":
        raise UsageError(f"{version.ref} is a {version.kind} adapter, not a ranker")
    return load_ranker(version.path)
