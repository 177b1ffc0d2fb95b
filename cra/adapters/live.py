"""Live metrics of an adapter version: what harness runs that used it scored.

The calls are read through the `llm_calls` store; a call used a version when `llm_calls`
records its adapter and version (or its served name `NAME@vN` as the model). A ranker
version is scored on the retrievals it served (the `retrievals` store): recall@k and MRR
of its file order against the task's gold files that its parent snapshot holds.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cra.adapters.metrics import Reference, score_output
from cra.adapters.names import name_kind
from cra.db import llm_calls
from cra.db.retrievals import ServedRetrieval, served_by
from cra.git import GitError
from cra.harness.index import python_blobs
from cra.ranker.metrics import rank_metrics
from cra.repos.layout import package_path


def _positives(served: ServedRetrieval, repos_dir: Path, trees: dict) -> set[str]:
    """The task's gold files as they were named in its parent snapshot, present there (a
    file the commit added is no ranker's to find); empty when the clone is gone."""
    key = (served.repo, served.parent_sha)
    if key not in trees:
        trees[key] = set()
        if served.parent_sha:
            try:
                repo_dir = package_path(repos_dir, served.repo).repo_dir
                trees[key] = set(python_blobs(repo_dir, served.parent_sha))
            except (GitError, OSError):
                pass  # the clone is gone or rewritten: the task cannot be scored
    gold = json.loads(served.gold_files or "[]")
    named = {g.get("old_path") or g.get("path") for g in gold if isinstance(g, dict)}
    return {p for p in named if isinstance(p, str)} & trees[key]


def ranker_live_scores(
    conn: sqlite3.Connection, repos_dir: Path, name: str, version: int, *, since: str = ""
) -> list[dict[str, float]]:
    """recall@1/@5/@10 and MRR of each retrieval `name@vN` served at or after `since`,
    against its task's gold files; a task with no gold file in its parent is left out."""
    out = []
    trees: dict = {}
    for served in served_by(conn, name, version, since):
        wanted = _positives(served, repos_dir, trees)
        if not wanted:
            continue
        ranked = [f["path"] for f in json.loads(served.files) if isinstance(f, dict)]
        out.append(rank_metrics(ranked, wanted))
    return out


def live_scores(
    conn: sqlite3.Connection,
    name: str,
    version: int,
    *,
    since: str = "",
    repos_dir: Path | None = None,
) -> list[dict[str, float]]:
    """One metrics dict per scored live call of `name@vN` made at or after `since`: plan
    scores for planning, ranking metrics of its retrievals for a ranker (read against the
    clones under `repos_dir`), the kind's scorer against the task's gold for the others."""
    if name_kind(name) == "ranker":
        if repos_dir is None:
            raise ValueError(f"{name} is a ranker: its live scores need the repos folder")
        return ranker_live_scores(conn, repos_dir, name, version, since=since)
    if name == "planning":
        return [
            {
                "alignment": r.alignment,
                "file_recall": r.file_recall,
                "file_precision": r.file_precision,
                "symbol_recall": r.symbol_recall,
                "symbol_precision": r.symbol_precision,
            }
            for r in llm_calls.plan_scores_of(conn, name, version, since)
        ]
    out = []
    for call in llm_calls.calls_with_gold(conn, name, version, since):
        files = tuple(f["path"] for f in json.loads(call.gold_files or "[]") if isinstance(f, dict))
        symbols = tuple(
            f"{s['path']}::{s['qualname']}"
            for s in json.loads(call.gold_symbols or "[]")
            if isinstance(s, dict)
        )
        if name in ("scope", "precision") and not (files or symbols):
            continue
        out.append(score_output(name, call.response or "", Reference("", files, symbols)))
    return out


def runs_using(conn: sqlite3.Connection, name: str, version: int) -> list[int]:
    """Ids of the harness runs that called `name@vN`."""
    return llm_calls.runs_using(conn, name, version)
