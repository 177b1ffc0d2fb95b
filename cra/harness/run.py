"""`cra harness run`: per qualifying commit, in chronological order, check the parent out,
index it, retrieve, plan, score against the real diff, and record everything.

Each task's results are written in one transaction, so a crash or a kill leaves
`raw.db` consistent, and running again resumes where it stopped: a task whose plans
are recorded is skipped, never duplicated.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cra.db import RAW_MIGRATIONS, open_db, transaction
from cra.db.commits import Commit, qualified_commits
from cra.db.plans import PlanRow, ScoreRow, has_plans, record_plan
from cra.db.retrievals import record_retrieval
from cra.db.runs import finish_run, start_run
from cra.db.tasks import set_gold, task_id_for
from cra.errors import UsageError
from cra.fsutil import now_iso
from cra.git import git
from cra.harness.deps import closure, import_graph
from cra.harness.gold import GoldSymbol, diff_changes, touched_symbols
from cra.harness.index import Indexer, SnapshotIndex, python_blobs
from cra.harness.planners import PLANNERS, PlanAttempt, baseline_plan, llm_plans
from cra.harness.retrieve import Hit, retrieve
from cra.harness.score import Gold, PlanScore, Weights, score_plan
from cra.harness.tasks import mined_repo_id, record_task
from cra.harness.testpaths import is_test_path
from cra.llm.client import LLMClient
from cra.repos.layout import require_package
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


@dataclass
class RunSummary:
    """What a run did."""

    run_id: int
    repo: str
    planner: str
    tasks_total: int
    tasks_done: int = 0
    tasks_skipped: int = 0
    plans: int = 0
    invalid_plans: int = 0
    alignments: list[float] = field(default_factory=list)
    reparsed_files: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        mean = sum(self.alignments) / len(self.alignments) if self.alignments else None
        return {
            "run_id": self.run_id,
            "repo": self.repo,
            "planner": self.planner,
            "tasks_total": self.tasks_total,
            "tasks_done": self.tasks_done,
            "tasks_skipped": self.tasks_skipped,
            "plans": self.plans,
            "invalid_plans": self.invalid_plans,
            "mean_alignment": mean,
            "reparsed_files": self.reparsed_files,
        }


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


class _Worker:
    """Per-thread state: DB connections and an indexer of the package's repository."""

    def __init__(self, workspace: Workspace, repo_dir: Path) -> None:
        from cra.db import CURATED_MIGRATIONS

        # Used by its own thread only; closed by the run's thread when the run ends.
        self.curated = open_db(
            workspace.curated_db_path,
            CURATED_MIGRATIONS,
            busy_timeout_ms=workspace.config.settings.db.busy_timeout_ms,
            check_same_thread=False,
        )
        self.indexer = Indexer(self.curated, repo_dir)

    def close(self) -> None:
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


def process_commit(
    worker: _Worker,
    *,
    workspace: Workspace,
    repo: str,
    repo_dir: Path,
    commit: Commit,
    options: RunOptions,
    client: LLMClient | None,
) -> TaskResult:
    """Do everything for one commit except writing the results."""
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
    hits = retrieve(index, commit.task_text, k=config.settings.harness.top_k, exclude=tests)
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
        commit, task_id, gold_files, gold_symbols, hits, scored, index.errors(), index.reparsed
    )


def record_result(conn: sqlite3.Connection, run_id: int, result: TaskResult, top_k: int) -> None:
    """Write everything one task produced (gold, retrieval, plans and their scores) in one
    transaction."""
    now = now_iso()
    gold_symbols = [
        {"path": g.path, "qualname": g.qualname, "change": g.change} for g in result.gold_symbols
    ]
    hits = json.dumps([h.as_dict() for h in result.hits])
    with transaction(conn):
        set_gold(conn, result.task_id, json.dumps(result.gold_files), json.dumps(gold_symbols))
        record_retrieval(
            conn,
            result.task_id,
            run_id,
            method="bm25",
            query=result.commit.task_text,
            k=top_k,
            results=hits,
            now=now,
        )
        for attempt, score in result.attempts:
            plan = PlanRow(
                result.task_id,
                run_id,
                attempt.planner,
                attempt.temperature,
                attempt.llm_call_id,
                int(attempt.plan is not None),
                attempt.plan.to_json() if attempt.plan else None,
                attempt.raw,
                attempt.error,
            )
            record_plan(conn, plan, _score_row(score, result.index_errors), now)


def _score_row(score: PlanScore | None, index_errors: dict[str, str]) -> ScoreRow:
    """A plan's score as recorded; an invalid plan scores 0 on each."""
    if score is None:
        return ScoreRow(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 0.0, "{}", '{"invalid": true}')
    details = {
        **score.details,
        "symbols_defined": score.symbols_defined,
        "index_errors": index_errors,
    }
    return ScoreRow(
        score.file_precision,
        score.file_recall,
        score.file_f1,
        score.symbol_precision,
        score.symbol_recall,
        score.symbol_f1,
        score.order_score,
        score.alignment,
        json.dumps(score.weights.as_dict()),
        json.dumps(details),
    )


def make_client(workspace: Workspace, conn: sqlite3.Connection, run_id: int | None) -> LLMClient:
    """The LLM client `cra.toml` configures, checked to be reachable."""
    config = workspace.config
    key_var = config.settings.llm.api_key_env
    client = LLMClient(
        endpoint=config.settings.llm.endpoint,
        model=config.settings.llm.model,
        conn=conn,
        api_key=os.environ.get(key_var) if key_var else None,
        timeout_s=config.settings.llm.timeout_s,
        max_retries=config.settings.llm.max_retries,
        run_id=run_id,
    )
    from cra.llm.routing import make_router
    from cra.serving.state import running_state

    state = running_state(workspace)
    if state is not None and client.endpoint == state.base_url:
        client.router = make_router(workspace)  # each stage to its adapter's active version
        client.model = client.model or state.served_model
    served = client.models()
    if not client.model:
        if not served:
            client.close()
            raise UsageError(
                f"{client.endpoint} serves no model", hint="set [llm] model in cra.toml"
            )
        client.model = served[0]
    return client


Progress = Callable[[int, int, str], None]


class _Threads:
    """The per-thread workers and LLM clients of one run; used by their own thread only,
    closed by the run's thread when the run ends."""

    def __init__(
        self, workspace: Workspace, repo_dir: Path, client: LLMClient | None, jobs: int
    ) -> None:
        self.workspace = workspace
        self.repo_dir = repo_dir
        self.client = client
        self.jobs = jobs
        self.local = threading.local()
        self.workers: list[_Worker] = []
        self.clients: list[LLMClient] = []
        self.lock = threading.Lock()

    def worker(self) -> _Worker:
        """This thread's worker, made on first use."""
        worker = getattr(self.local, "worker", None)
        if worker is None:
            worker = self.local.worker = _Worker(self.workspace, self.repo_dir)
            with self.lock:
                self.workers.append(worker)
        return worker

    def thread_client(self) -> LLMClient | None:
        """This thread's LLM client: the run's own with one job, else a sibling with a
        connection of its own."""
        if self.client is None or self.jobs == 1:
            return self.client
        thread_client = getattr(self.local, "client", None)
        if thread_client is None:
            raw = open_db(
                self.workspace.raw_db_path,
                RAW_MIGRATIONS,
                busy_timeout_ms=self.workspace.config.settings.db.busy_timeout_ms,
                check_same_thread=False,
            )
            thread_client = self.local.client = self.client.sibling(raw)
            with self.lock:
                self.clients.append(thread_client)
        return thread_client

    def close(self) -> None:
        """Close every worker and client, the run's own client last."""
        for worker in self.workers:
            worker.close()
        for extra in self.clients:
            extra.close()
            if extra.conn is not None:
                extra.conn.close()
        if self.client is not None:
            self.client.close()


def _start(
    conn: sqlite3.Connection, repo_id: int, workspace: Workspace, options: RunOptions
) -> int:
    """Record the run with its parameters; return its id."""
    params = {
        "temperatures": list(options.temperatures) if options.planner == "llm" else [],
        "limit": options.limit,
        "since": options.since.isoformat() if options.since else None,
        "jobs": options.jobs,
        "top_k": workspace.config.settings.harness.top_k,
    }
    return start_run(conn, repo_id, "plan", json.dumps(params), now_iso(), planner=options.planner)


def _count(summary: RunSummary, result: TaskResult) -> None:
    """Add one task's plans to the summary (an invalid plan aligns 0)."""
    summary.tasks_done += 1
    summary.reparsed_files += result.reparsed
    for _attempt, score in result.attempts:
        summary.plans += 1
        if score is None:
            summary.invalid_plans += 1
            summary.alignments.append(0.0)
        else:
            summary.alignments.append(score.alignment)


def _plan_all(
    conn: sqlite3.Connection,
    threads: _Threads,
    repo_id: int,
    repo: str,
    todo: list[Commit],
    options: RunOptions,
    summary: RunSummary,
    progress: Progress | None,
) -> None:
    """Record the tasks of `todo`, process them on `options.jobs` threads and record each
    result in this thread as it comes."""
    workspace = threads.workspace
    for commit in todo:
        record_task(conn, repo_id, repo, commit)
    done = summary.tasks_skipped
    if progress:
        progress(done, summary.tasks_total, "")

    def work(commit: Commit) -> TaskResult:
        return process_commit(
            threads.worker(),
            workspace=workspace,
            repo=repo,
            repo_dir=threads.repo_dir,
            commit=commit,
            options=options,
            client=threads.thread_client(),
        )

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        for result in pool.map(work, todo):
            record_result(conn, summary.run_id, result, workspace.config.settings.harness.top_k)
            _count(summary, result)
            done += 1
            if progress:
                progress(done, summary.tasks_total, result.task_id)


def run_harness(
    workspace: Workspace,
    repo: str,
    options: RunOptions,
    *,
    progress: Progress | None = None,
) -> RunSummary:
    """Run the harness over `repo`'s qualifying commits; resume where a past run stopped."""
    package = require_package(workspace, repo)
    with closing(workspace.raw_db()) as conn:
        repo_id = mined_repo_id(conn, repo)
        commits = qualified_commits(conn, repo_id, options.since)
        if options.limit is not None:
            commits = commits[: options.limit]
        client = None
        if options.planner == "llm":
            client = make_client(workspace, conn, None)  # fails before the run starts
        run_id = _start(conn, repo_id, workspace, options)
        if client is not None:
            client.run_id = run_id
        summary = RunSummary(run_id, repo, options.planner, len(commits))
        todo = []
        for commit in commits:
            if has_plans(conn, task_id_for(repo, commit.sha), options.planner):
                summary.tasks_skipped += 1
            else:
                todo.append(commit)
        threads = _Threads(workspace, package.repo_dir, client, options.jobs)
        status, error = "interrupted", None
        try:
            _plan_all(conn, threads, repo_id, repo, todo, options, summary, progress)
            status = "finished"
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            threads.close()
            finish_run(conn, run_id, status, error, now_iso())
    return summary


def parse_temperatures(text: str) -> tuple[float, ...]:
    """Parse `0.2,0.7,1.0`; raise UsageError naming the bad item."""
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(float(item))
        except ValueError:
            raise UsageError(
                f"temperature {item!r} is not a number", hint="e.g. --temperatures 0.2,0.7,1.0"
            ) from None
    return tuple(values)
