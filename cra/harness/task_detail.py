"""One task in full, as `cra harness tasks show` gives it: its text and gold, every
validation of it (verdict, run, when, environment, the tests), the plans made for it with
their scores, its grades, and on request the commit's diff and the latest validation's
log tails.

Validation keeps no log files: each run's scratch folder is removed when its verdict is
known, and the verdict's `details` keep the tail of each run's output (the last 1500
characters), its collection errors and, for an infrastructure failure, the error.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cra.db.outcomes import RecordedOutcome, task_outcomes
from cra.db.plans import TaskPlan, task_plans
from cra.harness.task_views import first_line, json_list, json_object, require_task
from cra.harness.trees import commit_diff
from cra.repos.layout import require_package


def _strings(text: str | None) -> tuple[str, ...]:
    return tuple(str(item) for item in json_list(text))


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ValidationView:
    """One validation of the task: its verdict, run, time, environment and tests.
    `note` is why, where the verdict says: a reason, an error, an environment fallback."""

    run_id: int | None
    verdict: str
    created_at: str
    isolation: str | None
    env_id: str | None
    env_fingerprint: str | None
    note: str | None
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    flaky: tuple[str, ...]

    def as_dict(self, *, tests: bool) -> dict[str, object]:
        """JSON-ready; the test lists themselves only with `tests`, their counts always."""
        data: dict[str, object] = {
            "run_id": self.run_id,
            "verdict": self.verdict,
            "created_at": self.created_at,
            "isolation": self.isolation,
            "env_id": self.env_id,
            "env_fingerprint": self.env_fingerprint,
            "note": self.note,
            "counts": {
                "FAIL_TO_PASS": len(self.fail_to_pass),
                "PASS_TO_PASS": len(self.pass_to_pass),
                "flaky": len(self.flaky),
            },
        }
        if tests:
            data["FAIL_TO_PASS"] = list(self.fail_to_pass)
            data["PASS_TO_PASS"] = list(self.pass_to_pass)
            data["flaky"] = list(self.flaky)
        return data


def validation_view(outcome: RecordedOutcome) -> ValidationView:
    """A recorded validation as :class:`ValidationView`."""
    details = json_object(outcome.details)
    note = next(
        (details[k] for k in ("error", "reason", "fallback", "final") if details.get(k)), None
    )
    return ValidationView(
        outcome.run_id,
        outcome.verdict,
        outcome.created_at,
        outcome.isolation,
        _optional(details.get("env_id")),
        _optional(details.get("env_fingerprint")),
        _optional(note),
        _strings(outcome.fail_to_pass),
        _strings(outcome.pass_to_pass),
        _strings(outcome.flaky),
    )


@dataclass(frozen=True)
class RunLog:
    """One run of the tests in a validation: what it did and the tail of its output."""

    phase: str
    attempt: int
    tests: int | None
    exitstatus: int | None
    returncode: int | None
    problem: str | None
    seconds: float | None
    collect_errors: tuple[tuple[str, str], ...]
    tail: str


@dataclass(frozen=True)
class TaskLog:
    """The latest validation's log: its error (if cra's own work failed) and each run's."""

    run_id: int | None
    verdict: str
    created_at: str
    error: str | None
    runs: tuple[RunLog, ...]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_log(data: dict[str, object]) -> RunLog:
    errors = data.get("collect_errors")
    seconds = data.get("seconds")
    return RunLog(
        str(data.get("phase", "?")),
        _int(data.get("attempt")) or 0,
        _int(data.get("tests")),
        _int(data.get("exitstatus")),
        _int(data.get("returncode")),
        _optional(data.get("problem")),
        float(seconds) if isinstance(seconds, int | float) else None,
        tuple((str(k), str(v)) for k, v in errors.items()) if isinstance(errors, dict) else (),
        str(data.get("detail") or ""),
    )


def task_log(outcome: RecordedOutcome) -> TaskLog:
    """The log tails a validation recorded (see the module docstring)."""
    details = json_object(outcome.details)
    runs = details.get("runs")
    logs = tuple(_run_log(r) for r in runs if isinstance(r, dict)) if isinstance(runs, list) else ()
    return TaskLog(
        outcome.run_id, outcome.verdict, outcome.created_at, _optional(details.get("error")), logs
    )


@dataclass(frozen=True)
class GradeView:
    """A grade of a patch against the task, and where its report and logs are kept."""

    run_id: int | None
    verdict: str
    label: str | None
    created_at: str
    report: str | None


def grade_view(outcome: RecordedOutcome) -> GradeView:
    """A recorded grade as :class:`GradeView`."""
    details = json_object(outcome.details)
    return GradeView(
        outcome.run_id,
        outcome.verdict,
        _optional(details.get("label")),
        outcome.created_at,
        _optional(details.get("report")),
    )


@dataclass(frozen=True)
class TaskDiff:
    """The task's commit as a diff, split into the source change and the tests."""

    source: str
    tests: str


@dataclass(frozen=True)
class TaskView:
    """Everything recorded about one task (see the module docstring). `gold_files` and
    `gold_symbols` are empty until a planning run computed them (`gold_computed`)."""

    task_id: str
    repo: str
    sha: str
    parent: str | None
    authored_at: str
    title: str
    task_text: str
    gold_files: tuple[str, ...]
    gold_symbols: tuple[str, ...]
    gold_computed: bool
    files_source: tuple[str, ...]
    files_tests: tuple[str, ...]
    validations: tuple[ValidationView, ...]
    plans: tuple[TaskPlan, ...]
    grades: tuple[GradeView, ...]
    diff: TaskDiff | None = None
    log: TaskLog | None = None

    @property
    def latest(self) -> ValidationView | None:
        """The newest validation, or None when the task was never validated."""
        return self.validations[-1] if self.validations else None

    def as_dict(self, *, tests: bool = False) -> dict[str, object]:
        """JSON-ready task; the test lists only with `tests` (their counts always)."""
        nested = {"validations", "plans", "grades", "diff", "log"}
        data: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in nested
        }
        data["verdict"] = self.latest.verdict if self.latest else None
        data["validations"] = [v.as_dict(tests=tests) for v in self.validations]
        data["plans"] = [dataclasses.asdict(p) for p in self.plans]
        data["grades"] = [dataclasses.asdict(g) for g in self.grades]
        data["diff"] = None if self.diff is None else dataclasses.asdict(self.diff)
        data["log"] = None if self.log is None else dataclasses.asdict(self.log)
        return data


def _symbol(item: object) -> str:
    if isinstance(item, dict):
        return f"{item.get('path')}::{item.get('qualname')} ({item.get('change')})"
    return str(item)


def _path(item: object) -> str:
    return str(item.get("path")) if isinstance(item, dict) else str(item)


def show_task(
    conn: sqlite3.Connection,
    repos_dir: Path,
    task_id: str,
    *,
    diff: bool = False,
    log: bool = False,
) -> TaskView:
    """Task `task_id` in full; its commit's diff (read from the package in `repos_dir`)
    with `diff`, the latest validation's log tails with `log`. NotFound for an unknown id."""
    task = require_task(conn, task_id)
    outcomes = task_outcomes(conn, task.task_id, "validation")
    validations = tuple(validation_view(o) for o in outcomes)
    grades = tuple(grade_view(o) for o in task_outcomes(conn, task.task_id, "patch_grade"))
    gold_files = json_list(task.gold_files)
    diffed = None
    if diff:
        repo_dir = require_package(repos_dir, task.repo).repo_dir
        diffed = TaskDiff(*commit_diff(repo_dir, task.parent_sha, task.sha))
    return TaskView(
        task.task_id,
        task.repo,
        task.sha,
        task.parent_sha,
        task.authored_at,
        first_line(task.task_text),
        task.task_text,
        tuple(_path(f) for f in gold_files),
        tuple(_symbol(s) for s in json_list(task.gold_symbols)),
        bool(gold_files),
        _strings(task.files_source),
        _strings(task.files_tests),
        validations,
        tuple(task_plans(conn, task.task_id)),
        grades,
        diffed,
        task_log(outcomes[-1]) if log and outcomes else None,
    )
