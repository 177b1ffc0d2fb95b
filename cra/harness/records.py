"""Validation verdicts in `raw.db`: recording them, and reading back whether a task's
verdict is finished or its infrastructure failure is retried."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from cra.db import transaction
from cra.db.outcomes import (
    OutcomeRow,
    TestRow,
    latest_validation,
    record_outcome,
    validations,
)
from cra.fsutil import now_iso
from cra.harness.verdicts import ENV_MISMATCH, INFRA, INFRA_ATTEMPTS, Validation


def record_validation(conn: sqlite3.Connection, run_id: int, v: Validation, kind: str) -> None:
    """Write the verdict `v` (of `kind`: validation or patch_grade) and its runs' per-test
    rows in one transaction."""
    outcome = OutcomeRow(
        task_id=v.task_id,
        run_id=run_id,
        kind=kind,
        verdict=v.verdict,
        fail_to_pass=json.dumps(v.fail_to_pass),
        pass_to_pass=json.dumps(v.pass_to_pass),
        flaky=json.dumps(v.flaky),
        isolation=v.isolation,
        details=json.dumps({"env_id": v.env_id, **v.details}),
    )
    tests = [
        TestRow(r.phase, r.attempt, test_id, outcome, duration)
        for r in v.runs
        for test_id, (outcome, duration) in r.outcomes.items()
    ]
    with transaction(conn):
        record_outcome(conn, outcome, tests, env_id=v.env_id, now=now_iso())


def _details(text: str | None) -> dict[str, object]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def infra_attempts(conn: sqlite3.Connection, task_id: str, fingerprint: str) -> int:
    """How many of the task's latest validations in a row ended in an infrastructure
    verdict with this environment fingerprint."""
    count = 0
    for past in validations(conn, task_id):
        if past.verdict not in INFRA:
            break
        if _details(past.details).get("env_fingerprint") != fingerprint:
            break
        count += 1
    return count


def finished(conn: sqlite3.Connection, task_id: str, fingerprint: Callable[[], str]) -> bool:
    """Whether the task's latest validation is final: a verdict on the task, an
    infrastructure failure out of attempts, or an environment mismatch with the current
    environment (`fingerprint` is asked only when needed)."""
    latest = latest_validation(conn, task_id)
    if latest is None:
        return False
    if latest.verdict in INFRA:
        return infra_attempts(conn, task_id, fingerprint()) >= INFRA_ATTEMPTS
    if latest.verdict == ENV_MISMATCH:
        return _details(latest.details).get("env_fingerprint") == fingerprint()
    return True


def count_attempt(conn: sqlite3.Connection, v: Validation) -> None:
    """Number an infrastructure verdict's attempt; the last allowed one is final."""
    if v.verdict not in INFRA:
        return
    fingerprint = str(v.details.get("env_fingerprint", ""))
    attempt = infra_attempts(conn, v.task_id, fingerprint) + 1
    v.details["attempt"] = attempt
    if attempt >= INFRA_ATTEMPTS:
        v.details["final"] = (
            f"{v.verdict} in {attempt} attempts with this environment: not retried until "
            "the environment changes (a new pack) or --force"
        )
