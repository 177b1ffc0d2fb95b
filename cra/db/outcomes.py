"""`outcomes` and `test_runs`: the verdicts on tasks and patches, and the per-test rows
of the runs they rest on."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TestRow:
    """One test's outcome in one run."""

    __test__ = False  # not a pytest test class

    phase: str
    attempt: int
    test_id: str
    outcome: str
    duration_s: float


@dataclass(frozen=True)
class OutcomeRow:
    """A verdict as recorded; the lists and details are JSON texts."""

    task_id: str
    run_id: int
    kind: str
    verdict: str
    fail_to_pass: str
    pass_to_pass: str
    flaky: str
    isolation: str | None
    details: str


@dataclass(frozen=True)
class PastVerdict:
    """A recorded verdict of a task, as later runs read it back."""

    verdict: str
    fail_to_pass: str
    pass_to_pass: str
    details: str | None


@dataclass(frozen=True)
class VerdictCount:
    """How many tasks of a repository have a verdict as their latest validation."""

    repo: str
    verdict: str
    count: int


def record_outcome(
    conn: sqlite3.Connection,
    outcome: OutcomeRow,
    tests: Sequence[TestRow],
    *,
    env_id: str | None,
    now: str,
) -> None:
    """Write a verdict and its per-test rows; the caller holds the transaction."""
    rows = [
        (outcome.task_id, outcome.run_id, t.phase, t.attempt, t.test_id, t.outcome, t.duration_s)
        for t in tests
    ]
    conn.executemany(
        "INSERT INTO test_runs (task_id, run_id, phase, attempt, test_id, outcome, "
        "duration_s, env_id, isolation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row, env_id, outcome.isolation, now) for row in rows],
    )
    conn.execute(
        "INSERT INTO outcomes (task_id, run_id, kind, verdict, fail_to_pass, pass_to_pass, "
        "flaky, isolation, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            outcome.task_id,
            outcome.run_id,
            outcome.kind,
            outcome.verdict,
            outcome.fail_to_pass,
            outcome.pass_to_pass,
            outcome.flaky,
            outcome.isolation,
            outcome.details,
            now,
        ),
    )


_VALIDATIONS = (
    "SELECT verdict, fail_to_pass, pass_to_pass, details FROM outcomes "
    "WHERE task_id = ? AND kind = 'validation' ORDER BY id DESC"
)


def validations(conn: sqlite3.Connection, task_id: str) -> list[PastVerdict]:
    """The task's validation verdicts, newest first."""
    return [PastVerdict(*row) for row in conn.execute(_VALIDATIONS, (task_id,))]


def latest_validation(conn: sqlite3.Connection, task_id: str) -> PastVerdict | None:
    """The task's newest validation verdict, or None when it was never validated."""
    row = conn.execute(_VALIDATIONS + " LIMIT 1", (task_id,)).fetchone()
    return None if row is None else PastVerdict(*row)


@dataclass(frozen=True)
class VerifiedTask:
    """A task whose latest validation is `verified`: its repository, its commit and that
    verdict (the lists and details as JSON texts)."""

    task_id: str
    repo: str
    sha: str
    parent_sha: str | None
    authored_at: str
    task_text: str
    fail_to_pass: str
    pass_to_pass: str
    flaky: str
    isolation: str | None
    details: str
    validated_at: str


def verified_tasks(
    conn: sqlite3.Connection, repo: str | None, since_ts: int | None
) -> list[VerifiedTask]:
    """The verified tasks (of `repo`, authored at or after `since_ts`) whose commit is
    still in its package's history, by repository and oldest commit first."""
    rows = conn.execute(
        "SELECT t.task_id, r.name, c.sha, c.parent_sha, c.authored_at, t.task_text, "
        "o.fail_to_pass, o.pass_to_pass, o.flaky, o.isolation, o.details, o.created_at "
        "FROM outcomes o JOIN tasks t USING (task_id) JOIN commits c ON c.id = t.commit_id "
        "JOIN repos r ON r.id = t.repo_id WHERE o.kind = 'validation' "
        "AND o.verdict = 'verified' AND o.id = (SELECT max(id) FROM outcomes "
        "WHERE task_id = o.task_id AND kind = 'validation') AND c.gone_at IS NULL "
        "AND (:repo IS NULL OR r.name = :repo) AND (:since IS NULL OR c.authored_ts >= :since) "
        "ORDER BY r.name, c.authored_ts, t.task_id",
        {"repo": repo, "since": since_ts},
    ).fetchall()
    return [VerifiedTask(*row) for row in rows]


def latest_import(conn: sqlite3.Connection, task_id: str) -> PastVerdict | None:
    """The task's newest import record (kind `import`), or None when it was not imported."""
    row = conn.execute(
        "SELECT verdict, fail_to_pass, pass_to_pass, details FROM outcomes "
        "WHERE task_id = ? AND kind = 'import' ORDER BY id DESC LIMIT 1",
        (task_id,),
    ).fetchone()
    return None if row is None else PastVerdict(*row)


def record_import(
    conn: sqlite3.Connection,
    task_id: str,
    lists: tuple[str, str, str],
    details: str,
    now: str,
) -> None:
    """Record that the task was imported with the FAIL_TO_PASS, PASS_TO_PASS and flaky
    tests (JSON texts) its source claims, as an outcome of kind `import` (never a
    validation); the caller holds the transaction."""
    conn.execute(
        "INSERT INTO outcomes (task_id, run_id, kind, verdict, fail_to_pass, pass_to_pass, "
        "flaky, isolation, details, created_at) VALUES (?, NULL, 'import', 'imported', "
        "?, ?, ?, NULL, ?, ?)",
        (task_id, *lists, details, now),
    )


def latest_verdict_counts(conn: sqlite3.Connection, repo: str | None) -> list[VerdictCount]:
    """Per repository (or of `repo`) and verdict, the tasks whose latest validation it is."""
    rows = conn.execute(
        "SELECT r.name, o.verdict, count(*) FROM outcomes o JOIN tasks t USING (task_id) "
        "JOIN repos r ON r.id = t.repo_id WHERE o.kind = 'validation' "
        "AND o.id = (SELECT max(id) FROM outcomes WHERE task_id = o.task_id "
        "AND kind = 'validation') AND (? IS NULL OR r.name = ?) "
        "GROUP BY r.name, o.verdict ORDER BY r.name",
        (repo, repo),
    ).fetchall()
    return [VerdictCount(r[0], r[1], int(r[2])) for r in rows]


@dataclass(frozen=True)
class RecordedOutcome:
    """A verdict with the run that gave it and when; the lists and details are JSON texts."""

    id: int
    task_id: str
    run_id: int | None
    kind: str
    verdict: str
    fail_to_pass: str
    pass_to_pass: str
    flaky: str
    isolation: str | None
    details: str
    created_at: str


_RECORDED = (
    "SELECT o.id, o.task_id, o.run_id, o.kind, o.verdict, o.fail_to_pass, o.pass_to_pass, "
    "o.flaky, o.isolation, o.details, o.created_at FROM outcomes o "
)


def task_outcomes(conn: sqlite3.Connection, task_id: str, kind: str) -> list[RecordedOutcome]:
    """The task's verdicts of `kind` (validation, patch_grade), oldest first."""
    sql = _RECORDED + "WHERE o.task_id = ? AND o.kind = ? ORDER BY o.id"
    return [RecordedOutcome(*row) for row in conn.execute(sql, (task_id, kind))]


def latest_validations(conn: sqlite3.Connection, repo: str | None) -> list[RecordedOutcome]:
    """The latest validation verdict of every validated task (of `repo`)."""
    sql = _RECORDED + (
        "JOIN tasks t USING (task_id) JOIN repos r ON r.id = t.repo_id "
        "WHERE o.kind = 'validation' AND o.id = (SELECT max(id) FROM outcomes "
        "WHERE task_id = o.task_id AND kind = 'validation') AND (? IS NULL OR r.name = ?)"
    )
    return [RecordedOutcome(*row) for row in conn.execute(sql, (repo, repo))]
