"""Reranking a task's files in `cra harness run`: what a file ranker promises the harness,
and how its order becomes the hits the planners read.

The harness never loads a ranker itself: the command wires one (the active scope-ranker
version, when `[retrieve] ranker = "learned"`) and hands it to the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cra.harness.index import SnapshotIndex
from cra.harness.retrieve import Hit


@dataclass(frozen=True)
class RankedFile:
    """A file in the ranker's order: its mixed score and its parts (normalised)."""

    path: str
    score: float
    encoder: float
    bm25: float
    prior: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as recorded in `retrievals.files`."""
        return {
            "path": self.path,
            "score": self.score,
            "encoder": self.encoder,
            "bm25": self.bm25,
            "prior": self.prior,
        }


class FileRanker(Protocol):
    """A ranker version that orders a snapshot's files for a query."""

    name: str
    version: int

    def rank_files(
        self,
        index: SnapshotIndex,
        repo_dir: Path,
        query: str,
        *,
        exclude: set[str],
        changes: Sequence[Sequence[str]] = (),
    ) -> Sequence[RankedFile]:
        """The snapshot's candidate files for `query`, best first (files of `exclude` left
        out); blobs are read from `repo_dir` by the shas `index` names; `changes` are the
        files each earlier commit of the repository changed, oldest first."""
        ...


@dataclass(frozen=True)
class Retrieval:
    """How a task's files were ranked: `bm25`, or `learned` by adapter@version."""

    method: str
    adapter: str | None = None
    version: int | None = None
    files: tuple[RankedFile, ...] = ()

    def files_json(self) -> list[dict[str, object]] | None:
        """The ranked files as recorded (None for BM25 alone)."""
        return [f.as_dict() for f in self.files] if self.method != "bm25" else None


BM25 = Retrieval("bm25")


def files_first(hits: Sequence[Hit], files: Sequence[RankedFile], *, k: int) -> list[Hit]:
    """`hits` regrouped file by file in the ranker's order: each file's own BM25 hits (in
    their order), or one file hit when BM25 found none of its definitions. At most `k`
    hits, and at most a quarter of them (at least one) from any one file, so the top
    files all reach the planner."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    per_file = max(1, k // 4)
    by_file: dict[str, list[Hit]] = {}
    for hit in hits:
        by_file.setdefault(hit.file, []).append(hit)
    out: list[Hit] = []
    for ranked in files:
        own = by_file.get(ranked.path) or [Hit(ranked.path, None, "file", ranked.score)]
        out.extend(own[:per_file])
        if len(out) >= k:
            break
    return out[:k]
