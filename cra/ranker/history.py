"""Ranker rows and candidate files from a workspace's mined history: each qualifying
commit is a task whose query is its text and whose positives are the Python source files
it changed that exist in its parent snapshot; hard negatives are BM25's top files there
that it did not change.

This is the function curation can call to write ranker rows (`history_rows`), and the
one place that turns a snapshot into candidate files with texts (`Snapshots`).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cra.db.commits import Commit, qualified_commits, untested_commits
from cra.db.repos import repo_id
from cra.db.tasks import task_id_for
from cra.errors import NotFound, UsageError
from cra.git import cat_blobs
from cra.harness.index import Indexer, SnapshotIndex, read_blobs
from cra.harness.messages import clean_task_text
from cra.harness.retrieve import retrieve
from cra.harness.testpaths import is_test_path
from cra.ranker.text import file_text, module_docstring
from cra.ranker_rows import RankerRow

BM25_DEPTH = 5000
"""Definitions BM25 returns per query before they are folded into files."""


@dataclass(frozen=True)
class Candidate:
    """A file the ranker may put first: its path, blob sha (the embedding cache key; empty
    when unknown), its text and its BM25 score for the query (0 when BM25 missed it)."""

    path: str
    blob: str
    text: str
    bm25: float


@dataclass(frozen=True)
class View:
    """One snapshot: its index and the text of each non-test Python source file."""

    index: SnapshotIndex
    texts: dict[str, str]

    @property
    def sources(self) -> list[str]:
        """The files a task may have to change, sorted."""
        return sorted(self.texts)

    def bm25(self, query: str) -> dict[str, float]:
        """BM25 score of each source file for `query`: its best definition's score."""
        tests = {p for p in self.index.parsed if p not in self.texts}
        scores: dict[str, float] = {}
        for hit in retrieve(self.index, query, k=BM25_DEPTH, exclude=tests):
            scores[hit.file] = max(scores.get(hit.file, 0.0), hit.score)
        return scores

    def candidates(self, query: str, k: int) -> list[Candidate]:
        """BM25's top `k` files for `query`, then (when it found fewer) the other source
        files in path order, all with their texts."""
        scores = self.bm25(query)
        ranked = sorted(scores, key=lambda p: (-scores[p], p))
        rest = [p for p in self.sources if p not in scores]
        return [
            Candidate(p, self.index.files.get(p, ""), self.texts[p], scores.get(p, 0.0))
            for p in [*ranked, *rest][:k]
        ]


@dataclass
class Snapshots:
    """Snapshots of one workspace's repositories, indexed through `curated.db`; texts are
    cached by blob sha, so consecutive commits cost only what changed."""

    curated: sqlite3.Connection
    repo_dirs: dict[str, Path]
    _indexers: dict[str, Indexer] = field(default_factory=dict)
    _texts: dict[tuple[str, str], str] = field(default_factory=dict)

    def view(self, repo: str, sha: str) -> View:
        """The snapshot of commit `sha` of `repo`."""
        if repo not in self.repo_dirs:
            raise NotFound(f"no repository {repo!r} for the ranker's snapshots")
        indexer = self._indexers.get(repo)
        if indexer is None:
            indexer = self._indexers[repo] = Indexer(self.curated, self.repo_dirs[repo])
        index = indexer.index(sha)
        sources = [p for p in index.parsed if not is_test_path(p)]
        missing = [index.files[p] for p in sources if (p, index.files[p]) not in self._texts]
        data = read_blobs(self.repo_dirs[repo], sorted(set(missing))) if missing else {}
        texts: dict[str, str] = {}
        for path in sources:
            key = (path, index.files[path])
            if key not in self._texts:
                doc = module_docstring(data.get(key[1], b""))
                self._texts[key] = file_text(path, index.parsed.get(path), doc)
            texts[path] = self._texts[key]
        return View(index, texts)


def prior_counts(rows: Sequence[RankerRow], before: str, repo: str) -> Counter[str]:
    """How often each file of `repo` was a positive in the rows authored before `before`."""
    counts: Counter[str] = Counter()
    for row in rows:
        if row.repo == repo and row.authored_at < before:
            counts.update(row.positives)
    return counts


def chronological_split(
    rows: Sequence[RankerRow], share: float
) -> tuple[list[RankerRow], list[RankerRow]]:
    """(older, newest `share`) of `rows` by authored time: the holdout is never older
    than anything trained on."""
    ordered = sorted(rows, key=lambda r: (r.authored_at, r.task_id))
    cut = len(ordered) - max(1, round(len(ordered) * share)) if len(ordered) > 1 else 1
    return ordered[:cut], ordered[cut:]


def holdout_split(
    rows: Sequence[RankerRow], share: float
) -> tuple[list[RankerRow], list[RankerRow]]:
    """(train, holdout) per repository: the newest `share` of each repository's tested
    rows (its tasks) are held out, and only its rows authored before the first of them
    train (untested rows of the held-out period are in neither); both oldest first."""
    train: list[RankerRow] = []
    held: list[RankerRow] = []
    for repo in sorted({r.repo for r in rows}):
        mine = [r for r in rows if r.repo == repo]
        tested = [r for r in mine if r.kind == "tested"] or mine
        _, newest = chronological_split(tested, share)
        if not newest:  # one tested row: nothing to hold out
            train.extend(mine)
            continue
        first = min((r.authored_at, r.task_id) for r in newest)
        held.extend(newest)
        train.extend(r for r in mine if (r.authored_at, r.task_id) < first)
    return sorted(train, key=_order), sorted(held, key=_order)


def _order(row: RankerRow) -> tuple[str, str]:
    return (row.authored_at, row.task_id)


def _messages(repo_dir: Path, commits: Sequence[Commit]) -> dict[str, str]:
    """Each commit's message as a task text, read from its commit object."""
    found = cat_blobs(repo_dir, [c.sha for c in commits])
    out: dict[str, str] = {}
    for sha, (kind, raw) in found.items():
        if kind == "commit":
            _, _, message = raw.decode("utf-8", "replace").partition("\n\n")
            out[sha] = clean_task_text(message)
    return out


def _commits(
    raw: sqlite3.Connection, snapshots: Snapshots, repo: str, rid: int, untested: bool
) -> list[tuple[Commit, str]]:
    """(commit, kind) of the repository's qualifying commits and, with `untested`, of
    those dropped only at the tests stage (their task text read from git), oldest first."""
    out = [(c, "tested") for c in qualified_commits(raw, rid, None)]
    if untested and repo in snapshots.repo_dirs:
        extra = untested_commits(raw, rid)
        texts = _messages(snapshots.repo_dirs[repo], extra) if extra else {}
        out += [(replace(c, task_text=texts.get(c.sha, "")), "untested") for c in extra]
    return sorted(out, key=lambda ck: (ck[0].authored_at, ck[0].id))


def commit_rows(
    raw: sqlite3.Connection,
    snapshots: Snapshots,
    repo: str,
    *,
    negatives: int,
    untested: bool = True,
) -> Iterable[RankerRow]:
    """The ranker rows of `repo`'s qualifying commits (kind `tested`) and, with `untested`,
    of its commits dropped only for their tests (kind `untested`), oldest first; a commit
    whose changed source files are all new (absent from the parent) yields none."""
    rid = repo_id(raw, repo)
    if rid is None:
        raise NotFound(f"no repository {repo!r} in raw.db", hint="pack one with `cra repo pack`")
    for commit, kind in _commits(raw, snapshots, repo, rid, untested):
        if not commit.parent or not commit.task_text.strip():
            continue
        view = snapshots.view(repo, commit.parent)
        positives = tuple(sorted(p for p in commit.files_source if p in view.texts))
        if not positives:
            continue
        ranked = [c.path for c in view.candidates(commit.task_text, negatives + len(positives))]
        hard = tuple(p for p in ranked if p not in positives)[:negatives]
        yield RankerRow(
            task_id=task_id_for(repo, commit.sha),
            repo=repo,
            query=commit.task_text,
            positives=positives,
            negatives=hard,
            parent_sha=commit.parent,
            authored_at=commit.authored_at,
            kind=kind,
        )


def history_rows(
    raw: sqlite3.Connection,
    snapshots: Snapshots,
    repos: Sequence[str],
    *,
    negatives: int = 10,
    untested: bool = True,
) -> list[RankerRow]:
    """Ranker rows of every qualifying commit of `repos` and (with `untested`) of every
    commit dropped only for its tests, oldest first; UsageError when there are none."""
    rows = [
        r
        for repo in repos
        for r in commit_rows(raw, snapshots, repo, negatives=negatives, untested=untested)
    ]
    if not rows:
        raise UsageError(
            f"no ranker rows: {', '.join(repos) or 'no repository'} has no qualifying commit "
            "that changes a source file of its parent",
            hint="mine commits first with `cra harness mine --repo NAME`",
        )
    return sorted(rows, key=lambda r: (r.authored_at, r.task_id))
