"""Judging a task from its before and after runs: FAIL_TO_PASS, PASS_TO_PASS, flaky."""

from __future__ import annotations

from collections.abc import Sequence

from cra.harness.verdicts import (
    ENV_MISMATCH,
    FAILING,
    MISMATCH_MIN_TESTS,
    RUN_PROBLEMS,
    PytestRun,
    Validation,
)


def outcome_in(run: PytestRun, test_id: str) -> str:
    if test_id in run.outcomes:
        return run.outcomes[test_id][0]
    module = test_id.split("::", 1)[0]
    if module in run.collect_errors or any(
        test_id.startswith(e + "::") for e in run.collect_errors
    ):
        return "error"  # its module could not even be imported
    return "absent"


def stable_outcomes(runs: Sequence[PytestRun], ids: set[str]) -> tuple[dict[str, str], set[str]]:
    """Each test's outcome when every run agrees on it, and the tests they disagree on."""
    stable, flaky = {}, set()
    for test_id in ids:
        seen = {outcome_in(r, test_id) for r in runs}
        if len(seen) == 1:
            stable[test_id] = seen.pop()
        else:
            flaky.add(test_id)
    return stable, flaky


def judge(before: Sequence[PytestRun], after: Sequence[PytestRun]) -> Validation:
    """The verdict on a task from its before and after runs (task_id left empty)."""
    runs = [*before, *after]
    v = Validation("", "no_fail_to_pass", runs=runs)
    for klass in RUN_PROBLEMS:
        if any(r.problem == klass for r in runs):
            v.verdict = klass
            return v
    if any(r.problem for r in runs):
        v.verdict = "tests_error"
        return v
    if any(r.collect_errors for r in after):
        v.verdict = "tests_error"
        return v
    ids = {t for r in after for t in r.outcomes}
    b, flaky_b = stable_outcomes(before, ids)
    a, flaky_a = stable_outcomes(after, ids)
    v.flaky = sorted(flaky_b | flaky_a)
    counted = ids - flaky_b - flaky_a
    v.fail_to_pass = sorted(t for t in counted if b[t] in FAILING and a[t] == "passed")
    v.pass_to_pass = sorted(t for t in counted if b[t] == "passed" and a[t] == "passed")
    if v.fail_to_pass:
        v.verdict = "verified"
    elif len(counted) >= MISMATCH_MIN_TESTS and all(
        b[t] in FAILING and a[t] in FAILING for t in counted
    ):
        v.verdict = ENV_MISMATCH
    return v
