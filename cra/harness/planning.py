"""Planning one task of `cra harness run`: check the commit's parent out, index it,
retrieve, plan, and score the plans against the real diff; nothing is written here
(see :mod:`cra.harness.plan_records`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cra.db import CURATED_MIGRATIONS, open_db
from cra.db.commits import Commit
from cra.db.tasks import task_id_for
from cra.errors import UsageError
from cra.git import git
from cra.harness.deps import closure, import_graph
from cra.harness.gold import GoldSymbol, diff_changes, touched_symbols
from cra.harness.index import Indexer, SnapshotIndex, python_blobs
from cra.harness.planners import PLANNERS, PlanAttempt, baseline_plan, llm_plans
from cra.harness.rerank import BM25, FileRanker, Retrieval, files_first
from cra.harness.retrieve import Hit, retrieve
from cra.harness.score import Gold, PlanScore, Weights, score_plan
from cra.harness.testpaths import is_test_path
from cra.llm.client import LLMClient
from cra.workspace import Workspace


@dataclass(frozen=True)
class RunOptions:
    """What `cra harness run` was asked to do."""

    planner: str = "baseline"
    temperatures: tuple[float, ...] = (0.2,)
    limit: int | None = None
    since: datetime | None = None
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.planner not in PLANNERS:
            raise UsageError(
                f"unknown planner {self.planner!r}", hint=f"choose one of {', '.join(PLANNERS)}"
            )
        if not self.temperatures:
            raise UsageError("give at least one temperature")
        for t in self.temperatures:
            if not 0 <= t <= 2:
                raise UsageError(f"temperature {t!r} is outside 0..2")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")


@dataclass
class TaskResult:
    """Everything one task produced, ready to be written in one transaction."""

    commit: Commit
    task_id: str
    gold_files: list[dict[str, str | None]]
    gold_symbols: list[GoldSymbol]
    hits: list[Hit]
    attempts: list[tuple[PlanAttempt, PlanScore | None]]
    index_errors: dict[str, str]
    reparsed: int
    retrieval: Retrieval = BM25
    """How the files were ranked: BM25 alone, or reranked by a learned ranker version."""


@contextmanager
def parent_checkout(repo_dir: Path, parent: str, where: Path) -> Iterator[Path]:
    """A checkout of `parent` at `where` holding that one commit and nothing else: no
    history before or after it, no refs but HEAD, no reflog, no remote."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    try:
        git("init", "-q", str(where), cwd=where.parent)
        git("fetch", "-q", "--depth", "1", "--no-tags", str(repo_dir), parent, cwd=where)
        git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=where)
        (where / ".git" / "FETCH_HEAD").unlink(missing_ok=True)
        git("reflog", "expire", "--expire=now", "--all", cwd=where)
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


class Worker:
    """Per-thread state: DB connections and an indexer of the package's repository."""

    def __init__(self, workspace: Workspace, repo_dir: Path) -> None:
        # Used by its own thread only; closed by the run's thread when the run ends.
        self.curated = open_db(
            workspace.curated_db_path,
            CURATED_MIGRATIONS,
            busy_timeout_ms=workspace.config.settings.db.busy_timeout_ms,
            check_same_thread=False,
        )
        self.indexer = Indexer(self.curated, repo_dir)

    def close(self) -> None:
        """Close the worker's connection."""
        self.curated.close()


def _gold(
    indexer: Indexer, repo_dir: Path, commit: Commit, parent_index: SnapshotIndex
) -> tuple[list[dict[str, str | None]], list[GoldSymbol]]:
    source = set(commit.files_source)
    changes = [
        c
        for c in diff_changes(repo_dir, commit.parent, commit.sha)
        if c.path in source or (c.old_path in source)
    ]
    new_blobs = python_blobs(repo_dir, commit.sha)
    wanted = [new_blobs[c.new_path] for c in changes if c.new_path in new_blobs]
    parsed, _ = indexer.parse_blobs(wanted)
    files: list[dict[str, str | None]] = []
    symbols: list[GoldSymbol] = []
    for change in changes:
        old_syms = parent_index.symbols(change.old_path) if change.old_path else ()
        new_entry = parsed.get(new_blobs.get(change.new_path or "", ""))
        new_syms = new_entry.symbols if new_entry else ()
        files.append({"path": change.path, "old_path": change.old_path if change.renamed else None})
        symbols.extend(touched_symbols(change, old_syms, new_syms))
    return files, symbols


def _is_test(path: str, tests: set[str]) -> bool:
    return path in tests or is_test_path(path)


def _retrieve(
    index: SnapshotIndex,
    repo_dir: Path,
    query: str,
    tests: set[str],
    *,
    k: int,
    ranker: FileRanker | None,
    changes: Sequence[Sequence[str]] = (),
) -> tuple[list[Hit], Retrieval]:
    """BM25's hits for `query` in the parent snapshot; with `ranker`, regrouped in the
    order it gives the snapshot's files (the same snapshot and the files earlier commits
    changed, nothing later)."""
    hits = retrieve(index, query, k=k, exclude=tests)
    if ranker is None:
        return hits, BM25
    files = tuple(ranker.rank_files(index, repo_dir, query, exclude=tests, changes=changes))
    retrieval = Retrieval("learned", ranker.name, ranker.version, files)
    return files_first(hits, files, k=k), retrieval


def process_commit(
    worker: Worker,
    *,
    workspace: Workspace,
    repo: str,
    repo_dir: Path,
    commit: Commit,
    options: RunOptions,
    client: LLMClient | None,
    ranker: FileRanker | None = None,
    changes: Sequence[Sequence[str]] = (),
) -> TaskResult:
    """Do everything for one commit except writing the results; with `ranker`, the
    planner reads the files in the ranker's order (`changes`: the files each earlier
    commit of the repository changed, oldest first)."""
    config = workspace.config
    task_id = task_id_for(repo, commit.sha)
    scratch = workspace.harness_dir / "worktrees" / task_id.replace("@", "-")
    with parent_checkout(repo_dir, commit.parent, scratch) as checkout:
        # The planner sees the parent only: index it from the checkout's own objects.
        view = worker.indexer.sharing_cache(checkout)
        index = view.index("HEAD")
    gold_files, gold_symbols = _gold(worker.indexer, repo_dir, commit, index)
    deps = closure(import_graph({p: index.imports(p) for p in index.parsed}))
    tests = {p for p in index.parsed if _is_test(p, set(commit.files_tests))}
    top_k = config.settings.harness.top_k
    hits, retrieval = _retrieve(
        index, repo_dir, commit.task_text, tests, k=top_k, ranker=ranker, changes=changes
    )
    if options.planner == "baseline":
        plan = baseline_plan(
            commit.task_text,
            hits,
            deps,
            sorted(tests),
            max_files=config.settings.harness.baseline_max_files,
            max_symbols=config.settings.harness.baseline_max_symbols,
        )
        attempts = [PlanAttempt("baseline", None, plan, None, None)]
    else:
        if client is None:
            raise ValueError("the llm planner needs a client")
        attempts = llm_plans(
            client,
            task_id=task_id,
            task=commit.task_text,
            hits=hits,
            index=index,
            temperatures=options.temperatures,
            max_tokens=config.settings.llm.max_tokens,
        )
    gold = Gold.build([(str(f["path"]), f["old_path"]) for f in gold_files], gold_symbols)
    weights = Weights(
        config.settings.score.weight_files,
        config.settings.score.weight_symbols,
        config.settings.score.weight_order,
    )
    scored = [
        (a, score_plan(a.plan, gold, deps, weights) if a.plan is not None else None)
        for a in attempts
    ]
    return TaskResult(
        commit,
        task_id,
        gold_files,
        gold_symbols,
        hits,
        scored,
        index.errors(),
        index.reparsed,
        retrieval,
    )
