"""`cra harness validate`: prove each task with the repository's own tests.

Per qualifying commit, in the environment the manifest assigns to its date:
- *before*: the parent, with the commit's test files applied, runs the commit's tests;
- *after*: the commit runs the same tests.
Each phase runs `[validate] runs` times. FAIL_TO_PASS are the tests that failed (or
could not even be collected) before and passed after, PASS_TO_PASS those that passed in
both; a test whose outcome changes between runs of a phase is flaky and never counted.
A task with at least one FAIL_TO_PASS test is *verified*.

Outcomes come from the JSON lines of cra's pytest plugin, cross-checked with pytest's
exit code and the number of tests collected: no free text is parsed for test ids.
Every run is sandboxed (see :mod:`cra.sandbox`). Nothing the sandbox wrote is
trusted: the plugin writes to a file cra opened itself before the run and handed in as a
descriptor (no path the tests can reach leads to it), read back with a size cap and
every record checked; a report that fails is the run's `bad_report`. Infrastructure
failures (env_failed, sandbox_failed, timeout, bad_report, harness_failed) are verdicts
of their own, never task failures; running again retries them up to `INFRA_ATTEMPTS`
times in the same environment, then they are final. One commit's failure is its verdict
and the run goes on with the next; finished verdicts are kept.
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cra.db.commits import Commit, qualified_commits
from cra.db.outcomes import latest_validation
from cra.db.runs import finish_run, run_label, start_run
from cra.db.tasks import task_id_for
from cra.env.build import BuiltEnv
from cra.errors import ConfigError, CraError, UsageError
from cra.fsutil import now_iso
from cra.harness.judge import judge
from cra.harness.records import count_attempt, finished, record_validation
from cra.harness.runner import Runner, make_runner
from cra.harness.tasks import mined_repo_id, record_task
from cra.harness.trees import before_tree, export_tree
from cra.harness.verdicts import COMMIT_ERRORS, ENV_MISMATCH, RUN_PROBLEMS, PytestRun, Validation
from cra.sandbox import describe_isolation
from cra.workspace import Workspace

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ValidateOptions:
    """What `cra harness validate` was asked to do."""

    limit: int | None = None
    since: datetime | None = None
    runs: int | None = None
    allow_unsafe: bool = False
    force: bool = False
    jobs: int = 1
    sample: int | None = None
    """Validate only this many commits, spread evenly over the history (oldest and newest
    included), instead of all of them."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")
        if self.runs is not None and self.runs < 1:
            raise UsageError(f"--runs must be >= 1, got {self.runs}")


@dataclass
class ValidateSummary:
    """What a validation pass did."""

    run_id: int | None
    """None when there was nothing to do: no run is recorded then."""
    repo: str
    tasks_total: int
    tasks_done: int = 0
    tasks_skipped: int = 0
    """Commits with a final verdict, skipped (they never count against `--limit`)."""
    tasks_left: int = 0
    """Commits still to validate that `--limit` left for a later run."""
    run_label: str | None = None
    """The run as users name it (`validate #3`); None when no run was recorded."""
    verdicts: dict[str, int] = field(default_factory=dict)
    isolation: str | None = None
    seconds: float = 0.0
    test_seconds: float = 0.0
    latest: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "run": self.run_label,
            "repo": self.repo,
            "tasks_total": self.tasks_total,
            "tasks_done": self.tasks_done,
            "tasks_skipped": self.tasks_skipped,
            "tasks_left": self.tasks_left,
            "verdicts": dict(self.verdicts),
            "verified": self.latest.get("verified", 0),
            "latest_verdicts": dict(self.latest),
            "isolation": self.isolation,
            "seconds": round(self.seconds, 3),
            "test_seconds": round(self.test_seconds, 3),
        }


RETRY_OLDER = frozenset({"env_failed", "env_mismatch", "tests_error"})
"""Verdicts after which a commit is tried again in the environment of the era before its
own: an era's environment is pinned as of the era's end, and a commit from its start can
need the older dependencies its code was written against."""


def validate_commit(runner: Runner, commit: Commit, scratch: Path) -> Validation:
    """Run the before and after tests of one commit; return the verdict. An error of the
    commit's own work (`COMMIT_ERRORS`) is its verdict, `harness_failed`, never a stop;
    `scratch` is removed in every case."""
    started = time.perf_counter()
    try:
        v = _validate_commit(runner, commit, scratch)
    except (UsageError, ConfigError):
        raise
    except COMMIT_ERRORS as exc:
        v = Validation(task_id_for(runner.repo, commit.sha), "harness_failed")
        v.isolation = runner.isolation
        v.details = {
            "error": f"{type(exc).__name__}: {exc}"[-1500:],
            "hint": getattr(exc, "hint", None),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    v.details.setdefault("env_fingerprint", runner.fingerprint(commit))
    v.seconds = time.perf_counter() - started
    v.details["seconds"] = round(v.seconds, 3)
    return v


def _validate_commit(runner: Runner, commit: Commit, scratch: Path) -> Validation:
    task_id = task_id_for(runner.repo, commit.sha)
    unusable = runner.unusable_env(commit)
    if unusable is not None:
        v = Validation(task_id, "env_unusable", isolation=runner.isolation)
        v.env_id, v.details = unusable.id, {"reason": unusable.unusable}
        return v
    v = _validate_in(runner, commit, scratch, runner.env_for(commit))
    older = runner.older_env(commit) if v.verdict in RETRY_OLDER else None
    if older is not None:
        retry = _validate_in(runner, commit, scratch, older)
        if retry.verdict in ("verified", "no_fail_to_pass"):
            retry.details["fallback"] = f"{v.env_id or 'its own era'} gave {v.verdict}"
            v = retry
    return v


def _validate_in(
    runner: Runner, commit: Commit, scratch: Path, env: BuiltEnv | CraError
) -> Validation:
    """The verdict on one commit in one environment."""
    task_id = task_id_for(runner.repo, commit.sha)
    if isinstance(env, CraError):
        v = Validation(task_id, "env_failed", isolation=runner.isolation)
        v.details = {"error": str(env), "hint": env.hint}
        return v
    repo_dir = runner.package.repo_dir
    timeout = runner.timeout_s
    if scratch.exists():
        shutil.rmtree(scratch)
    try:
        trees = scratch / "trees"
        tests = before_tree(repo_dir, commit, trees / "before")
        export_tree(repo_dir, commit.sha, trees / "after")
        if not tests:
            v = Validation(task_id, "no_fail_to_pass", isolation=runner.isolation)
            v.env_id = env.env_id
            v.details = {"reason": "the commit changes no test module"}
            return v
        before, after = _run_phases(runner, env, trees, tests, scratch, timeout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    v = judge(before, after)
    v.task_id, v.isolation, v.env_id = task_id, runner.isolation, env.env_id
    v.details = {
        "tests": tests,
        "runs": [r.summary() for r in v.runs],
        "test_seconds": round(sum(r.test_seconds for r in v.runs), 3),
        "env_fingerprint": runner.fingerprint(commit),
    }
    if v.verdict == ENV_MISMATCH:
        v.details["reason"] = "every test failed before and after the commit"
    return v


def _run_phases(
    runner: Runner, env: BuiltEnv, trees: Path, tests: list[str], scratch: Path, timeout: float
) -> tuple[list[PytestRun], list[PytestRun]]:
    """The before and after runs, alternating; the first run with an infrastructure
    problem ends them (it decides the verdict: a commit that hangs at import costs one
    timeout, not one per run)."""
    before: list[PytestRun] = []
    after: list[PytestRun] = []
    for attempt in range(1, runner.runs + 1):
        for phase, bucket in (("before", before), ("after", after)):
            run = runner.run_tests(
                env, trees / phase, tests, phase, attempt, scratch / f"{phase}-{attempt}", timeout
            )
            bucket.append(run)
            if run.problem in RUN_PROBLEMS:
                return before, after
    return before, after


def spread(items: list[Commit], n: int) -> list[Commit]:
    """`n` of `items` at even steps, the first and the last included."""
    if n <= 0 or len(items) <= n:
        return list(items)
    if n == 1:
        return [items[-1]]
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def _commits_to_validate(
    conn: sqlite3.Connection, repo_id: int, options: ValidateOptions
) -> list[Commit]:
    """The qualifying commits, sampled as asked (`--limit` applies to the unfinished
    ones, in :func:`_unfinished`)."""
    commits = qualified_commits(conn, repo_id, options.since)
    if options.sample is not None:
        commits = spread(commits, options.sample)
    return commits


def _start(conn: sqlite3.Connection, repo_id: int, runner: Runner, options: ValidateOptions) -> int:
    """Record the validation run with its parameters; return its id."""
    params = {
        "runs": runner.runs,
        "isolation": runner.isolation,
        "limit": options.limit,
        "force": options.force,
        "jobs": options.jobs,
        "sandbox": describe_isolation(runner.isolation),
    }
    return start_run(conn, repo_id, "validate", json.dumps(params), now_iso())


def _unfinished(
    conn: sqlite3.Connection,
    repo_id: int,
    runner: Runner,
    commits: list[Commit],
    options: ValidateOptions,
    summary: ValidateSummary,
) -> list[Commit]:
    """Return the first `options.limit` commits without a finished verdict (every
    commit with `force`), recording their tasks; count the finished ones as skipped and
    the unfinished ones past the limit as left."""
    todo: list[Commit] = []
    for commit in commits:
        task_id = task_id_for(runner.repo, commit.sha)
        current = functools.partial(runner.fingerprint, commit)
        if not options.force and finished(conn, task_id, current):
            summary.tasks_skipped += 1
        elif options.limit is None or len(todo) < options.limit:
            record_task(conn, repo_id, runner.repo, commit)
            todo.append(commit)
        else:
            summary.tasks_left += 1
    return todo


def _validate_all(
    conn: sqlite3.Connection,
    run_id: int,
    runner: Runner,
    todo: list[Commit],
    options: ValidateOptions,
    summary: ValidateSummary,
    report: Callable[[str], None],
) -> None:
    """Validate `todo` on `options.jobs` threads; each verdict is recorded as soon as it
    is known, in this thread."""
    scratch_root = runner.scratch_root
    scratch_root.mkdir(parents=True, exist_ok=True)

    def work(commit: Commit) -> Validation:
        scratch = Path(tempfile.mkdtemp(prefix=f"{commit.sha[:12]}-", dir=scratch_root))
        return validate_commit(runner, commit, scratch)

    pool = ThreadPoolExecutor(max_workers=options.jobs)
    try:
        for v in pool.map(work, todo):
            count_attempt(conn, v)
            record_validation(conn, run_id, v, "validation")
            summary.tasks_done += 1
            summary.verdicts[v.verdict] = summary.verdicts.get(v.verdict, 0) + 1
            summary.test_seconds += sum(r.test_seconds for r in v.runs)
            report(v.task_id)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _count_latest(
    conn: sqlite3.Connection, commits: list[Commit], summary: ValidateSummary
) -> None:
    """Count each commit's latest verdict, whichever run gave it."""
    for commit in commits:
        latest = latest_validation(conn, task_id_for(summary.repo, commit.sha))
        if latest is not None:
            summary.latest[latest.verdict] = summary.latest.get(latest.verdict, 0) + 1


def validate_repo(
    workspace: Workspace,
    repo: str,
    options: ValidateOptions,
    *,
    progress: Progress | None = None,
) -> ValidateSummary:
    """Validate up to `options.limit` of `repo`'s qualifying commits without a finished
    verdict (all of them without a limit); the finished ones are skipped. With nothing to
    validate, no run is recorded and the summary's `run_id` is None."""
    started = time.perf_counter()
    runner = make_runner(workspace, repo, runs=options.runs, allow_unsafe=options.allow_unsafe)
    with closing(workspace.raw_db()) as conn:
        repo_id = mined_repo_id(conn, repo)
        commits = _commits_to_validate(conn, repo_id, options)
        summary = ValidateSummary(None, repo, 0, isolation=runner.isolation)
        todo = _unfinished(conn, repo_id, runner, commits, options, summary)
        summary.tasks_total = summary.tasks_skipped + len(todo)
        if todo:
            _validate_in_run(conn, repo_id, runner, todo, options, summary, progress)
        _count_latest(conn, commits, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _validate_in_run(
    conn: sqlite3.Connection,
    repo_id: int,
    runner: Runner,
    todo: list[Commit],
    options: ValidateOptions,
    summary: ValidateSummary,
    progress: Progress | None,
) -> None:
    """Record a run and validate `todo` in it, reporting progress; the run is closed
    with how it ended."""
    run_id = _start(conn, repo_id, runner, options)
    summary.run_id, summary.run_label = run_id, run_label(conn, run_id)
    done = summary.tasks_skipped
    if progress:
        progress(done, summary.tasks_total, "")

    def report(task_id: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, summary.tasks_total, task_id)

    status, error = "interrupted", None
    try:
        _validate_all(conn, run_id, runner, todo, options, summary, report)
        status = "finished"
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        finish_run(conn, run_id, status, error, now_iso())
