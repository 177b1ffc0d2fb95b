"""Grading a patch against a verified task's FAIL_TO_PASS and PASS_TO_PASS tests."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from cra.db import transaction
from cra.db.commits import Commit
from cra.db.outcomes import latest_validation
from cra.db.runs import record_task_run
from cra.db.tasks import TaskCommit, task_commit
from cra.env.build import BuiltEnv
from cra.errors import ConfigError, CraError, NotFound, UsageError
from cra.fsutil import now_iso
from cra.git import git
from cra.harness.grade_report import (
    GradeReport,
    TestsStatus,
    keep_logs,
    staging_folder,
    write_report,
)
from cra.harness.judge import outcome_in
from cra.harness.records import record_validation
from cra.harness.runner import Runner, make_runner
from cra.harness.trees import before_tree, gold_patch
from cra.harness.verdicts import COMMIT_ERRORS, RUN_PROBLEMS, PytestRun, Validation
from cra.repos.layout import require_package
from cra.workspace import Workspace


@dataclass
class Grade:
    """How a patch did against a verified task's FAIL_TO_PASS and PASS_TO_PASS tests."""

    task_id: str
    verdict: str  # resolved, unresolved, patch_failed, or an infrastructure verdict
    fail_to_pass: dict[str, str] = field(default_factory=dict)
    pass_to_pass: dict[str, str] = field(default_factory=dict)
    isolation: str | None = None
    detail: str = ""
    report: Path | None = None
    """The grade's `report.json`, its test logs beside it (see :mod:`cra.harness.grade_report`)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready grade."""
        return {
            "task_id": self.task_id,
            "verdict": self.verdict,
            "fail_to_pass": self.fail_to_pass,
            "pass_to_pass": self.pass_to_pass,
            "isolation": self.isolation,
            "detail": self.detail,
            "report": None if self.report is None else str(self.report),
        }


def _task_commit(conn: sqlite3.Connection, task_id: str) -> TaskCommit:
    found = task_commit(conn, task_id)
    if found is None:
        raise NotFound(f"no task {task_id!r}", hint="task ids look like REPO@SHA12")
    return found


def task_gold_patch(workspace: Workspace, task_id: str) -> str:
    """The task's gold patch: its commit's change minus the tests."""
    with closing(workspace.raw_db()) as conn:
        task = _task_commit(conn, task_id)
    repo_dir = require_package(workspace.repos_dir, task.repo).repo_dir
    return gold_patch(repo_dir, task.commit.parent, task.commit.sha)


def _expected_tests(
    conn: sqlite3.Connection, task_id: str, repo: str
) -> tuple[list[str], list[str]]:
    """The FAIL_TO_PASS and PASS_TO_PASS tests of a verified task; UsageError otherwise."""
    latest = latest_validation(conn, task_id)
    if latest is None or latest.verdict != "verified":
        why = f" (its validation verdict is {latest.verdict})" if latest else " (never validated)"
        raise UsageError(
            f"task {task_id} is not verified" + why,
            hint=f"run `cra harness validate --repo {repo}`; only verified tasks are graded",
        )
    return json.loads(latest.fail_to_pass), json.loads(latest.pass_to_pass)


def grade_patch(
    workspace: Workspace,
    task_id: str,
    patch: str,
    *,
    runs: int = 1,
    allow_unsafe: bool = False,
    label: str = "patch",
) -> Grade:
    """Apply `patch` onto the task's parent plus its tests, run the tests, and grade it:
    resolved when every FAIL_TO_PASS and PASS_TO_PASS test passes in every run. The
    report and the test logs are kept in the grade's folder (`Grade.report`)."""
    if runs < 1:
        raise UsageError(f"--runs must be >= 1, got {runs}")
    with closing(workspace.raw_db()) as conn:
        task = _task_commit(conn, task_id)
        expected = _expected_tests(conn, task_id, task.repo)
        runner = make_runner(workspace, task.repo, runs=runs, allow_unsafe=allow_unsafe)
        env = runner.env_for(task.commit)
        grade = Grade(task_id, "unresolved", isolation=runner.isolation)
        staged = staging_folder(workspace.harness_dir, task_id)
        try:
            test_runs = _grade_sandboxed(
                runner, task.commit, env, (patch, label), grade, expected, staged
            )
            with transaction(conn):
                params = json.dumps({"runs": runs, "label": label})
                run_id = record_task_run(conn, task_id, "grade", params, now_iso(), now_iso())
            v = _grade_validation(grade, test_runs, runner, env, label, expected)
            _keep_report(workspace, staged, (run_id, patch), grade, v, expected)
        finally:
            shutil.rmtree(staged, ignore_errors=True)  # gone already once kept
        record_validation(conn, run_id, v, "patch_grade")
    return grade


def _keep_report(
    workspace: Workspace,
    staged: Path,
    graded: tuple[int, str],
    grade: Grade,
    v: Validation,
    expected: tuple[list[str], list[str]],
) -> None:
    """Write the grade's report beside its kept logs; note where in `grade` and `v`."""
    run_id, patch = graded
    report = GradeReport(
        grade.task_id,
        run_id,
        str(v.details["label"]),
        grade.verdict,
        patch_exists=bool(patch.strip()),
        patch_successfully_applied=bool(v.runs),
        isolation=grade.isolation,
        env_id=v.env_id,
        fail_to_pass=TestsStatus.of(expected[0], grade.fail_to_pass),
        pass_to_pass=TestsStatus.of(expected[1], grade.pass_to_pass),
        logs=(),
        created_at=now_iso(),
    )
    written = write_report(staged, report, patch, workspace.harness_dir)
    grade.report = written.path
    where = written.path
    if where.is_relative_to(workspace.root):
        where = where.relative_to(workspace.root)
    v.details["report"] = str(where)
    v.details["report_sha256"] = written.sha256


def _grade_sandboxed(
    runner: Runner,
    commit: Commit,
    env: BuiltEnv | CraError,
    labelled: tuple[str, str],
    grade: Grade,
    expected: tuple[list[str], list[str]],
    keep: Path,
) -> list[PytestRun]:
    """Grade in a scratch folder of its own (removed in every case, its test logs kept
    in `keep` first); return the runs. An error of the commit's own work is the grade
    `harness_failed`."""
    scratch_root = runner.scratch_root
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"grade-{commit.sha[:12]}-", dir=scratch_root))
    test_runs: list[PytestRun] = []
    try:
        if isinstance(env, CraError):
            grade.verdict, grade.detail = "env_failed", str(env)
        else:
            _grade_in(runner, commit, env, labelled, scratch, grade, test_runs, expected)
    except (UsageError, ConfigError):
        raise
    except COMMIT_ERRORS as exc:
        test_runs.clear()
        grade.verdict, grade.detail = "harness_failed", f"{type(exc).__name__}: {exc}"
    finally:
        try:
            keep_logs(scratch, keep)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return test_runs


def _grade_validation(
    grade: Grade,
    test_runs: list[PytestRun],
    runner: Runner,
    env: BuiltEnv | CraError,
    label: str,
    expected: tuple[list[str], list[str]],
) -> Validation:
    """The grade as the verdict `raw.db` records."""
    f2p, p2p = expected
    details: dict[str, object] = {
        "label": label,
        "detail": grade.detail[-1500:],
        "expected_fail_to_pass": f2p,
        "expected_pass_to_pass": p2p,
        "runs": [r.summary() for r in test_runs],
    }
    return Validation(
        grade.task_id,
        grade.verdict,
        fail_to_pass=sorted(t for t, o in grade.fail_to_pass.items() if o == "passed"),
        pass_to_pass=sorted(t for t, o in grade.pass_to_pass.items() if o == "passed"),
        runs=test_runs,
        isolation=runner.isolation,
        env_id=None if isinstance(env, CraError) else env.env_id,
        details=details,
    )


def _grade_in(
    runner: Runner,
    commit: Commit,
    env: BuiltEnv,
    labelled: tuple[str, str],
    scratch: Path,
    grade: Grade,
    test_runs: list[PytestRun],
    expected: tuple[list[str], list[str]],
) -> None:
    """Grade the (patch, label) on the task's parent plus its tests in `env`, filling
    `grade` and `test_runs`; `expected` are the FAIL_TO_PASS and PASS_TO_PASS tests."""
    patch, label = labelled
    tree = scratch / "tree"
    tests = before_tree(runner.package.repo_dir, commit, tree)
    applied = _apply(tree, patch)
    if applied is not None:
        grade.verdict, grade.detail = "patch_failed", applied
        return
    timeout = runner.timeout_s
    for attempt in range(1, runner.runs + 1):
        run_scratch = scratch / f"run-{attempt}"
        test_runs.append(runner.run_tests(env, tree, tests, label, attempt, run_scratch, timeout))
    _grade(grade, test_runs, *expected)


def _apply(tree: Path, patch: str) -> str | None:
    if not patch.strip():
        return "the patch is empty"
    with tempfile.NamedTemporaryFile("w", suffix=".patch", delete=False) as fh:
        fh.write(patch if patch.endswith("\n") else patch + "\n")
        name = fh.name
    try:
        git("apply", "--whitespace=nowarn", name, cwd=tree)
    except CraError as exc:
        return str(exc)
    finally:
        os.unlink(name)
    return None


def _grade(grade: Grade, runs: list[PytestRun], f2p: list[str], p2p: list[str]) -> None:
    for klass in RUN_PROBLEMS:
        if any(r.problem == klass for r in runs):
            grade.verdict = klass
            return
    if any(r.problem for r in runs):
        grade.verdict = "tests_error"
        grade.detail = next(r.detail for r in runs if r.problem)
        return

    def worst(test_id: str) -> str:
        seen = [outcome_in(r, test_id) for r in runs]
        return next((o for o in seen if o != "passed"), "passed")

    grade.fail_to_pass = {t: worst(t) for t in f2p}
    grade.pass_to_pass = {t: worst(t) for t in p2p}
    ok = all(o == "passed" for o in (*grade.fail_to_pass.values(), *grade.pass_to_pass.values()))
    grade.verdict = "resolved" if ok else "unresolved"
