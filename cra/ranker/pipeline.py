"""The scope ranker in `cra harness run`: with `[retrieve] ranker = "learned"`, the active
version is loaded once per run (in-process, on the CPU) and reranks BM25's candidate files
of each task's parent snapshot; with none active, the run retrieves with BM25 alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from cra.adapters.registry import active_version, verify_files
from cra.errors import UsageError
from cra.harness.index import SnapshotIndex, read_blobs
from cra.harness.rerank import RankedFile
from cra.harness.testpaths import is_test_path
from cra.ranker.history import View
from cra.ranker.model import Ranker, load_ranker
from cra.ranker.text import file_text, module_docstring
from cra.ranker_rows import RANKER_ADAPTER
from cra.workspace import Workspace

DEFAULT_CANDIDATES = 50
"""Candidate files per task when the version does not say how many it was evaluated on."""


@dataclass
class SnapshotRanker:
    """A ranker version reranking a snapshot's files for the harness (one run, any number
    of threads: scoring is serialised, file texts and embeddings are cached by blob)."""

    ranker: Ranker
    name: str
    version: int
    candidates: int = DEFAULT_CANDIDATES
    _texts: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def texts(self, index: SnapshotIndex, repo_dir: Path, exclude: set[str]) -> dict[str, str]:
        """The ranker's text of each source file of the snapshot not in `exclude`."""
        sources = [p for p in index.parsed if p not in exclude and not is_test_path(p)]
        missing = sorted(
            {index.files[p] for p in sources if (p, index.files[p]) not in self._texts}
        )
        data = read_blobs(repo_dir, missing) if missing else {}
        out: dict[str, str] = {}
        for path in sources:
            key = (path, index.files[path])
            if key not in self._texts:
                doc = module_docstring(data.get(key[1], b""))
                self._texts[key] = file_text(path, index.parsed.get(path), doc)
            out[path] = self._texts[key]
        return out

    def rank_files(
        self,
        index: SnapshotIndex,
        repo_dir: Path,
        query: str,
        *,
        exclude: set[str],
        changes: Sequence[Sequence[str]] = (),
    ) -> Sequence[RankedFile]:
        """BM25's top candidate files of the snapshot for `query`, reranked best first
        (`changes` feed the recency prior)."""
        with self._lock:
            view = View(index, self.texts(index, repo_dir, exclude))
            cands = view.candidates(query, self.candidates)
            scored = self.ranker.rerank(query, cands, changes)
        return [
            RankedFile(
                s.path, round(s.score, 6), round(s.encoder, 6), round(s.bm25, 6), round(s.prior, 6)
            )
            for s in scored
        ]


def pipeline_ranker(
    workspace: Workspace, *, say: Callable[[str], None], name: str = RANKER_ADAPTER
) -> SnapshotRanker | None:
    """The ranker `cra harness run` reranks with: None for `[retrieve] ranker = "bm25"`,
    and (saying so through `say`) when no version of `name` is active; else the active
    version, its files checked against their sha256, loaded."""
    if workspace.config.settings.retrieve.ranker != "learned":
        return None
    with closing(workspace.raw_db()) as conn:
        version = active_version(conn, workspace.root, name)
    if version is None:
        say(f'warning: [retrieve] ranker = "learned", but {name} has no active version: using BM25')
        return None
    if version.kind != "ranker":
        raise UsageError(f"{version.ref} is a {version.kind} adapter, not a ranker")
    verify_files(version)
    try:
        import transformers

        # the run's own bar shows progress; the library's weight-loading bar is noise
        transformers.utils.logging.disable_progress_bar()
        ranker = load_ranker(version.path)
    except ImportError as exc:
        raise UsageError(
            f"cannot load {version.ref}: {exc}",
            hint="install the ranker extra (pip install -e '.[ranker]') or set "
            '[retrieve] ranker = "bm25"',
        ) from None
    candidates = int(version.hyperparams.get("candidates", DEFAULT_CANDIDATES))
    return SnapshotRanker(ranker, version.name, version.version, candidates)
