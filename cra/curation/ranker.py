"""Scope-ranker rows for a dataset: one per mined commit whose message and size stages
pass (tested or not), with the files it changed as positives and BM25's top files it
did not change as hard negatives, read at its parent snapshot.

The ground truth of a ranker needs no tests, so a commit dropped only at the tests stage
teaches it too (kind `untested`); a qualifying commit is `tested`. The rows are built by
:func:`cra.ranker.history.history_rows`; this step turns them into candidate rows with
their provenance and counts the commits that gave none, and why.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cra.adapters.registry import Version, list_versions
from cra.curation.rows import Row
from cra.curation.steps import Splits, Step
from cra.db.commits import qualified_commits, untested_commits
from cra.db.log_metrics import StageMetrics
from cra.db.log_tasks import TaskRecord
from cra.db.repos import repo_id, repo_names
from cra.db.tasks import task_id_for
from cra.errors import UsageError
from cra.ranker.history import Snapshots, history_rows
from cra.ranker_rows import RANKER_ADAPTER, TECHNIQUE, RankerRow, row_line

GROUP = (RANKER_ADAPTER, TECHNIQUE)
METRIC = "recall@5"
SOURCE = "history"
NO_CLONE = "no repository clone to read snapshots from"
NO_ROW = "no task text, or no changed source file in its parent snapshot"


class RankerRows(Step):
    """Adds the ranker rows of every repository with a clone to the pending rows,
    counting (per repository) the teaching commits that gave none."""

    name = "ranker rows"
    by = "by_repo"

    def __init__(
        self,
        raw: sqlite3.Connection,
        curated: sqlite3.Connection,
        repos_dir: Path,
        *,
        domains: Mapping[str, str],
        negatives: int,
    ) -> None:
        super().__init__(NO_CLONE, NO_ROW)
        self.raw = raw
        self.curated = curated
        self.repos_dir = repos_dir
        self.domains = domains
        self.negatives = negatives
        self.kinds: dict[str, int] = {"tested": 0, "untested": 0}

    def announce(self, splits: Splits) -> str | None:
        """What the step does."""
        return "building scope-ranker rows from the mined history"

    def run(self, splits: Splits) -> Splits:
        """The pending rows with the ranker rows added, oldest first."""
        rows = sorted((*splits.pending, *self.build()), key=lambda r: (r.authored_ts, r.task_id))
        return replace(splits, pending=tuple(rows))

    def build(self) -> list[Row]:
        """The candidate rows of every repository (see the module docstring)."""
        out: list[Row] = []
        for repo in repo_names(self.raw):
            shas = self._teaching_shas(repo)
            clone = self.repos_dir / repo / "repo"
            if not clone.is_dir():
                self.drop(NO_CLONE, repo, len(shas))
                continue
            snapshots = Snapshots(self.curated, {repo: clone})
            try:
                found = history_rows(self.raw, snapshots, [repo], negatives=self.negatives)
            except UsageError:
                found = []
            self.drop(NO_ROW, repo, len(shas) - len(found))
            domain = self.domains.get(repo, repo)
            for row in found:
                self.kinds[row.kind] += 1
                out.append(candidate_row(row, shas.get(row.task_id, ""), domain))
        return out

    def _teaching_shas(self, repo: str) -> dict[str, str]:
        """task id -> full sha of the repository's commits that may teach the ranker."""
        rid = repo_id(self.raw, repo)
        if rid is None:
            return {}
        commits = [*qualified_commits(self.raw, rid, None), *untested_commits(self.raw, rid)]
        return {task_id_for(repo, c.sha): c.sha for c in commits}


def candidate_row(row: RankerRow, sha: str, domain: str) -> Row:
    """The candidate row of one ranker row, its `meta` carrying the provenance every
    dataset row has (commit, authored date, source, domain)."""
    record = row_line(row)
    record["meta"].update(
        commit=sha, authored_at=row.authored_at, source=SOURCE, domain=domain, scores={}
    )
    ts = int(datetime.fromisoformat(row.authored_at).timestamp())
    answer, context = dedup_texts(record)
    return Row(RANKER_ADAPTER, TECHNIQUE, row.task_id, ts, domain, SOURCE, record, answer, context)


def dedup_texts(record: Mapping[str, object]) -> tuple[str, str]:
    """(answer, context) a ranker record is judged on for near-duplicates: its positive
    files, and its query."""
    body = record["ranker"]
    if not isinstance(body, dict):
        raise ValueError("a ranker record's `ranker` must be an object")
    return " ".join(body["positives"]), str(body["query"])


def ranker_domains(tasks: Sequence[TaskRecord]) -> dict[str, str]:
    """repository -> domain, from the logged tasks (a repository without one is its own
    domain)."""
    return {t.repo: t.domain for t in tasks}


def _newest_eval(version: Version) -> dict | None:
    evals = [e for e in version.eval_metrics.values() if isinstance(e, dict)]
    return max(evals, key=lambda e: str(e.get("evaluated_at", "")), default=None)


def ranker_metric(conn: sqlite3.Connection, root: Path, scope: StageMetrics) -> StageMetrics:
    """The scope ranker's recall@5 as a plan weighs it: the active version's newest eval;
    without an active version, BM25's recall on the newest evaluated version's holdout
    (BM25 ranks until a ranker is promoted); with no eval at all, the logged file recall
    of the scope stage (`scope`), which BM25's retrieval feeds."""
    versions = list_versions(conn, root, RANKER_ADAPTER)
    active = [v for v in versions if v.status == "active"]
    key = "metrics" if active else "bm25_metrics"
    evaluated = [(v, e) for v in (active or versions) if (e := _newest_eval(v))]
    if evaluated:
        version, result = max(evaluated, key=lambda ve: str(ve[1].get("evaluated_at", "")))
        value = result.get(key, {}).get(METRIC)
        if isinstance(value, int | float):
            what = f"{METRIC} of {version.ref if active else 'bm25'}"
            return StageMetrics("ranker", what, int(result.get("n", 0)), float(value), (), ())
    return replace(scope, stage="ranker", metric=f"{scope.metric} of the scope stage")
