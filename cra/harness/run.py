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
from cra.errors import NotFound, UsageError
from cra.fsutil import now_iso
from cra.git import git
from cra.harness.deps import closure, import_graph
from cra.harness.gold import GoldSymbol, diff_changes, touched_symbols
from cra.harness.index import Indexer, SnapshotIndex, python_blobs
from cra.harness.planners import PLANNERS, PlanAttempt, baseline_plan, llm_plans
from cra.harness.retrieve import Hit, retrieve
from cra.harness.score import Gold, PlanScore, Weights, score_plan
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


@dataclass(frozen=True)
class Commit:
    """A qualifying commit as mining recorded it."""

    id: int
    sha: str
    parent: str
    authored_at: str
    task_text: str
    files_source: tuple[str, ...]
    files_tests: tuple[str, ...]


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


def task_id_for(repo: str, sha: str) -> str:
    """The task id of a commit: `REPO@SHA12`."""
    return f"{repo}@{sha[:12]}"


def qualified_commits(
    conn: sqlite3.Connection, repo_id: int, since: datetime | None
) -> list[Commit]:
    """The repository's qualifying commits, oldest first (none gone from its history)."""
    rows = conn.execute(
        "SELECT id, sha, parent_sha, authored_at, authored_ts, task_text, files_source, "
        "files_tests FROM commits WHERE repo_id = ? AND verdict = 'qualified' "
        "AND gone_at IS NULL ORDER BY authored_ts, id",
        (repo_id,),
    ).fetchall()
    out = []
    for r in rows:
        if since is not None and r["authored_ts"] < since.timestamp():
            continue
        out.append(
            Commit(
                r["id"],
                r["sha"],
                r["parent_sha"],
                r["authored_at"],
                r["task_text"] or "",
                tuple(json.loads(r["files_source"])),
                tuple(json.loads(r["files_tests"])),
            )
        )
    return out


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
            busy_timeout_ms=workspace.config["db.busy_timeout_ms"],
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
        c for c in diff_changes(repo_dir, commit.parent, commit.sha)
        if c.path in source or (c.old_path in source)
    ]  # fmt: skip
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
    hits = retrieve(index, commit.task_text, k=config["harness.top_k"], exclude=tests)
    if options.planner == "baseline":
        plan = baseline_plan(
            commit.task_text,
            hits,
            deps,
            sorted(tests),
            max_files=config["harness.baseline_max_files"],
            max_symbols=config["harness.baseline_max_symbols"],
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
            max_tokens=config["llm.max_tokens"],
        )
    gold = Gold.build([(f["path"], f["old_path"]) for f in gold_files], gold_symbols)
    weights = Weights(
        config["score.weight_files"], config["score.weight_symbols"], config["score.weight_order"]
    )
    scored = [
        (a, score_plan(a.plan, gold, deps, weights) if a.plan is not None else None)
        for a in attempts
    ]
    return TaskResult(
        commit, task_id, gold_files, gold_symbols, hits, scored, index.errors(), index.reparsed
    )


def _ensure_task(conn: sqlite3.Connection, repo_id: int, repo: str, commit: Commit) -> str:
    task_id = task_id_for(repo, commit.sha)
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO tasks (task_id, repo_id, commit_id, task_text, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (task_id, repo_id, commit.id, commit.task_text, now_iso()),
        )
    return task_id


def _record(conn: sqlite3.Connection, run_id: int, result: TaskResult, top_k: int) -> None:
    now = now_iso()
    with transaction(conn):
        conn.execute(
            "UPDATE tasks SET gold_files = ?, gold_symbols = ? WHERE task_id = ?",
            (
                json.dumps(result.gold_files),
                json.dumps(
                    [
                        {"path": g.path, "qualname": g.qualname, "change": g.change}
                        for g in result.gold_symbols
                    ]
                ),
                result.task_id,
            ),
        )
        conn.execute(
            "INSERT INTO retrievals (task_id, run_id, method, query, k, results, created_at) "
            "VALUES (?, ?, 'bm25', ?, ?, ?, ?)",
            (
                result.task_id,
                run_id,
                result.commit.task_text,
                top_k,
                json.dumps([h.as_dict() for h in result.hits]),
                now,
            ),
        )
        for attempt, score in result.attempts:
            plan_id = conn.execute(
                "INSERT INTO plans (task_id, run_id, planner, temperature, llm_call_id, valid, "
                "plan, raw, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result.task_id,
                    run_id,
                    attempt.planner,
                    attempt.temperature,
                    attempt.llm_call_id,
                    int(attempt.plan is not None),
                    attempt.plan.to_json() if attempt.plan else None,
                    attempt.raw,
                    attempt.error,
                    now,
                ),
            ).lastrowid
            if score is None:
                values = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 0.0, "{}", '{"invalid": true}')
            else:
                values = (
                    score.file_precision,
                    score.file_recall,
                    score.file_f1,
                    score.symbol_precision,
                    score.symbol_recall,
                    score.symbol_f1,
                    score.order_score,
                    score.alignment,
                    json.dumps(score.weights.as_dict()),
                    json.dumps(
                        {
                            **score.details,
                            "symbols_defined": score.symbols_defined,
                            "index_errors": result.index_errors,
                        }
                    ),
                )
            conn.execute(
                "INSERT INTO plan_scores (plan_id, file_precision, file_recall, file_f1, "
                "symbol_precision, symbol_recall, symbol_f1, order_score, alignment, weights, "
                "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (plan_id, *values, now),
            )


def _done(conn: sqlite3.Connection, task_id: str, planner: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM plans WHERE task_id = ? AND planner = ? LIMIT 1", (task_id, planner)
        ).fetchone()
        is not None
    )


def make_client(workspace: Workspace, conn: sqlite3.Connection, run_id: int | None) -> LLMClient:
    """The LLM client `cra.toml` configures, checked to be reachable."""
    config = workspace.config
    key_var = config["llm.api_key_env"]
    client = LLMClient(
        endpoint=config["llm.endpoint"],
        model=config["llm.model"],
        conn=conn,
        api_key=os.environ.get(key_var) if key_var else None,
        timeout_s=config["llm.timeout_s"],
        max_retries=config["llm.max_retries"],
        run_id=run_id,
    )
    from cra.serving.server import make_router, running_state

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
        row = conn.execute("SELECT id FROM repos WHERE name = ?", (repo,)).fetchone()
        mined = (
            row is not None
            and conn.execute(
                "SELECT 1 FROM commits WHERE repo_id = ? LIMIT 1", (row["id"],)
            ).fetchone()
        )
        if not mined:
            raise NotFound(
                f"repository {repo!r} has not been mined yet",
                hint=f"run `cra harness mine --repo {repo}` first",
            )
        repo_id = int(row["id"])
        commits = qualified_commits(conn, repo_id, options.since)
        if options.limit is not None:
            commits = commits[: options.limit]
        client = None
        if options.planner == "llm":
            client = make_client(workspace, conn, None)  # fails before the run starts
        params = {
            "temperatures": list(options.temperatures) if options.planner == "llm" else [],
            "limit": options.limit,
            "since": options.since.isoformat() if options.since else None,
            "jobs": options.jobs,
            "top_k": workspace.config["harness.top_k"],
        }
        with transaction(conn):
            run_id = conn.execute(
                "INSERT INTO harness_runs (repo_id, kind, planner, params, started_at) "
                "VALUES (?, 'plan', ?, ?, ?)",
                (repo_id, options.planner, json.dumps(params), now_iso()),
            ).lastrowid
        if client is not None:
            client.run_id = run_id
        summary = RunSummary(run_id, repo, options.planner, len(commits))
        todo = []
        for commit in commits:
            if _done(conn, task_id_for(repo, commit.sha), options.planner):
                summary.tasks_skipped += 1
            else:
                todo.append(commit)
        status, error = "interrupted", None
        local = threading.local()
        workers: list[_Worker] = []
        thread_clients: list[LLMClient] = []
        lock = threading.Lock()

        def work(commit: Commit) -> TaskResult:
            worker = getattr(local, "worker", None)
            if worker is None:
                worker = local.worker = _Worker(workspace, package.repo_dir)
                with lock:
                    workers.append(worker)
            thread_client = client
            if client is not None and options.jobs > 1:
                thread_client = getattr(local, "client", None)
                if thread_client is None:
                    # Used by this thread only; closed by the run's thread when the run ends.
                    raw = open_db(
                        workspace.raw_db_path,
                        RAW_MIGRATIONS,
                        busy_timeout_ms=workspace.config["db.busy_timeout_ms"],
                        check_same_thread=False,
                    )
                    thread_client = local.client = client.sibling(raw)
                    with lock:
                        thread_clients.append(thread_client)
            return process_commit(
                worker,
                workspace=workspace,
                repo=repo,
                repo_dir=package.repo_dir,
                commit=commit,
                options=options,
                client=thread_client,
            )

        try:
            for commit in todo:
                _ensure_task(conn, repo_id, repo, commit)
            done = summary.tasks_skipped
            if progress:
                progress(done, len(commits), "")
            with ThreadPoolExecutor(max_workers=options.jobs) as pool:
                for result in pool.map(work, todo):
                    _record(conn, run_id, result, workspace.config["harness.top_k"])
                    summary.tasks_done += 1
                    summary.reparsed_files += result.reparsed
                    for _attempt, score in result.attempts:
                        summary.plans += 1
                        if score is None:
                            summary.invalid_plans += 1
                            summary.alignments.append(0.0)
                        else:
                            summary.alignments.append(score.alignment)
                    done += 1
                    if progress:
                        progress(done, len(commits), result.task_id)
            status = "finished"
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            for worker in workers:
                worker.close()
            for extra in thread_clients:
                extra.close()
                if extra.conn is not None:
                    extra.conn.close()
            if client is not None:
                client.close()
            with transaction(conn):
                conn.execute(
                    "UPDATE harness_runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                    (status, now_iso(), error, run_id),
                )
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
