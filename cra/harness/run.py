"""`cra harness run`: per qualifying commit, in chronological order, check the parent out,
index it, retrieve, plan, score against the real diff, and record everything.

Each task's results are written in one transaction, so a crash or a kill leaves
`raw.db` consistent, and running again resumes where it stopped: a task whose plans
are recorded is skipped, never duplicated.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from cra.db import RAW_MIGRATIONS, open_db
from cra.db.commits import Commit, qualified_commits, untested_commits
from cra.db.plans import has_plans
from cra.db.runs import finish_run, run_label, start_run
from cra.db.tasks import task_id_for
from cra.errors import UsageError
from cra.fsutil import now_iso
from cra.harness.client import make_client
from cra.harness.plan_records import record_result
from cra.harness.planning import RunOptions, TaskResult, Worker, process_commit
from cra.harness.rerank import FileRanker
from cra.harness.tasks import mined_repo_id, record_task
from cra.llm.client import LLMClient
from cra.repos.layout import require_package
from cra.workspace import Workspace


@dataclass
class RunSummary:
    """What a run did."""

    run_id: int | None
    """None when there was nothing to do: no run is recorded then."""
    repo: str
    planner: str
    tasks_total: int
    tasks_done: int = 0
    tasks_skipped: int = 0
    """Commits already planned, skipped (they never count against `--limit`)."""
    tasks_left: int = 0
    """Commits still to plan that `--limit` left for a later run."""
    run_label: str | None = None
    """The run as users name it (`plan #3`); None when no run was recorded."""
    plans: int = 0
    invalid_plans: int = 0
    alignments: list[float] = field(default_factory=list)
    reparsed_files: int = 0
    retrieval: str = "bm25"
    """How files were ranked: `bm25`, or the ranker version that reranked them."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        mean = sum(self.alignments) / len(self.alignments) if self.alignments else None
        return {
            "run_id": self.run_id,
            "run": self.run_label,
            "repo": self.repo,
            "planner": self.planner,
            "tasks_total": self.tasks_total,
            "tasks_done": self.tasks_done,
            "tasks_skipped": self.tasks_skipped,
            "tasks_left": self.tasks_left,
            "plans": self.plans,
            "invalid_plans": self.invalid_plans,
            "mean_alignment": mean,
            "reparsed_files": self.reparsed_files,
            "retrieval": self.retrieval,
        }


Progress = Callable[[int, int, str], None]


class _Threads:
    """The per-thread workers and LLM clients of one run; used by their own thread only,
    closed by the run's thread when the run ends."""

    def __init__(
        self,
        workspace: Workspace,
        repo_dir: Path,
        client: LLMClient | None,
        jobs: int,
        ranker: FileRanker | None = None,
    ) -> None:
        self.workspace = workspace
        self.repo_dir = repo_dir
        self.client = client
        self.jobs = jobs
        self.ranker = ranker
        self.local = threading.local()
        self.workers: list[Worker] = []
        self.clients: list[LLMClient] = []
        self.lock = threading.Lock()

    def worker(self) -> Worker:
        """This thread's worker, made on first use."""
        worker = getattr(self.local, "worker", None)
        if worker is None:
            worker = self.local.worker = Worker(self.workspace, self.repo_dir)
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
    conn: sqlite3.Connection,
    repo_id: int,
    workspace: Workspace,
    options: RunOptions,
    ranker: FileRanker | None,
) -> int:
    """Record the run with its parameters; return its id."""
    params = {
        "temperatures": list(options.temperatures) if options.planner == "llm" else [],
        "limit": options.limit,
        "since": options.since.isoformat() if options.since else None,
        "jobs": options.jobs,
        "top_k": workspace.config.settings.harness.top_k,
        "retrieval": "bm25" if ranker is None else "learned",
        "ranker": None if ranker is None else f"{ranker.name}@v{ranker.version}",
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
    run_id: int,
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

    earlier = EarlierChanges(conn, repo_id) if threads.ranker is not None else None

    def work(commit: Commit) -> TaskResult:
        return process_commit(
            threads.worker(),
            workspace=workspace,
            repo=repo,
            repo_dir=threads.repo_dir,
            commit=commit,
            options=options,
            client=threads.thread_client(),
            ranker=threads.ranker,
            changes=earlier.before(commit) if earlier else (),
        )

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        for result in pool.map(work, todo):
            record_result(conn, run_id, result, workspace.config.settings.harness.top_k)
            _count(summary, result)
            done += 1
            if progress:
                progress(done, summary.tasks_total, result.task_id)


class EarlierChanges:
    """The source files each mined commit of a repository changed (its qualifying commits
    and those dropped only for their tests), oldest first, cut before any commit: what a
    ranker's recency prior reads, nothing later than the task."""

    def __init__(self, conn: sqlite3.Connection, repo_id: int) -> None:
        mined = qualified_commits(conn, repo_id, None) + untested_commits(conn, repo_id)
        mined.sort(key=lambda c: (c.authored_at, c.id))
        self._times = [c.authored_at for c in mined]
        self._files = [c.files_source for c in mined]

    def before(self, commit: Commit) -> tuple[tuple[str, ...], ...]:
        """The changed files of every commit authored before `commit`, oldest first."""
        return tuple(self._files[: bisect.bisect_left(self._times, commit.authored_at)])


def _split(
    conn: sqlite3.Connection, repo: str, commits: list[Commit], options: RunOptions
) -> tuple[list[Commit], int, int]:
    """The commits to plan now (at most `options.limit` not planned yet), how many are
    already planned and how many unplanned ones the limit leaves for later."""
    todo: list[Commit] = []
    skipped = left = 0
    for commit in commits:
        if has_plans(conn, task_id_for(repo, commit.sha), options.planner):
            skipped += 1
        elif options.limit is None or len(todo) < options.limit:
            todo.append(commit)
        else:
            left += 1
    return todo, skipped, left


def run_harness(
    workspace: Workspace,
    repo: str,
    options: RunOptions,
    *,
    progress: Progress | None = None,
    ranker: FileRanker | None = None,
) -> RunSummary:
    """Plan up to `options.limit` of `repo`'s qualifying commits not planned yet (all of
    them without a limit); the planned ones are skipped. With nothing to plan, no run is
    recorded and the summary's `run_id` is None. With `ranker`, each task's files are
    reranked by it (the run loads nothing itself: the caller wires the ranker)."""
    package = require_package(workspace.repos_dir, repo)
    with closing(workspace.raw_db()) as conn:
        repo_id = mined_repo_id(conn, repo)
        commits = qualified_commits(conn, repo_id, options.since)
        todo, skipped, left = _split(conn, repo, commits, options)
        summary = RunSummary(None, repo, options.planner, skipped + len(todo))
        summary.tasks_skipped, summary.tasks_left = skipped, left
        if ranker is not None:
            summary.retrieval = f"{ranker.name}@v{ranker.version}"
        if not todo:
            return summary
        client = None
        if options.planner == "llm":
            client = make_client(workspace, conn, None)  # fails before the run starts
        summary.run_id = run_id = _start(conn, repo_id, workspace, options, ranker)
        summary.run_label = run_label(conn, run_id)
        if client is not None:
            client.run_id = run_id
        threads = _Threads(workspace, package.repo_dir, client, options.jobs, ranker)
        status, error = "interrupted", None
        try:
            _plan_all(conn, threads, run_id, repo_id, repo, todo, options, summary, progress)
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
