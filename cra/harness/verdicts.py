"""The verdicts of validation and grading, and the records they rest on: one run of the
tests (:class:`PytestRun`) and the verdict on a task (:class:`Validation`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cra.errors import CraError

VERDICTS = (
    "verified",
    "no_fail_to_pass",
    "tests_error",
    "env_failed",
    "timeout",
    "sandbox_failed",
    "env_unusable",
    "env_mismatch",
    "bad_report",
    "harness_failed",
)
INFRA = frozenset(
    {"env_failed", "timeout", "sandbox_failed", "env_unusable", "bad_report", "harness_failed"}
)
"""Failures of the infrastructure: never counted against a task, and retried by the next
runs up to `INFRA_ATTEMPTS` attempts in the same environment. `bad_report`: the tests' run
left a report cra cannot trust or read (too big, not UTF-8, not JSON, a record missing a
field); `harness_failed`: preparing or running the commit raised an error of cra's own
(git, the file system), recorded with it."""
INFRA_ATTEMPTS = 2
"""Attempts at a commit that end in an infrastructure verdict, with the same environment
fingerprint, before that verdict is final (not retried unless `--force` or a new pack)."""
COMMIT_ERRORS = (CraError, OSError, ValueError)
"""What one commit's work may raise and still be that commit's verdict (`harness_failed`):
cra's own errors (git, a tree that cannot be extracted), the file system's, bad values.
Errors about the user's input or settings (UsageError, ConfigError) stop the run, and so
does anything else (a programming error keeps its traceback)."""
ENV_MISMATCH = "env_mismatch"
"""Every test failed before and after: the environment cannot run the commit's tests.
Retried when the commit's environment changes (a new pack), never counted against it."""
MISMATCH_MIN_TESTS = 3
"""Fewer tests all failing can be one broken test, not a broken environment."""
NOT_JUDGED = INFRA | {ENV_MISMATCH}
GRADES = ("resolved", "unresolved", "patch_failed", *VERDICTS[2:6], *VERDICTS[8:])
FAILING = frozenset({"failed", "error"})
RUN_PROBLEMS = ("bad_report", "sandbox_failed", "env_failed", "timeout")
"""The infrastructure problems a run of the tests can have, the first found deciding."""


@dataclass
class PytestRun:
    """One run of the tests: every test's outcome, and whether the run itself held up."""

    phase: str
    attempt: int
    outcomes: dict[str, tuple[str, float]] = field(default_factory=dict)
    collected: int | None = None
    collect_errors: dict[str, str] = field(default_factory=dict)
    exitstatus: int | None = None
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    test_seconds: float = 0.0
    problem: str | None = None  # None, or a verdict class explaining why it is unusable
    detail: str = ""

    def summary(self) -> dict[str, object]:
        """JSON-ready facts about the run (not its per-test rows)."""
        return {
            "phase": self.phase,
            "attempt": self.attempt,
            "tests": len(self.outcomes),
            "collected": self.collected,
            "collect_errors": self.collect_errors,
            "exitstatus": self.exitstatus,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
            "problem": self.problem,
            "detail": self.detail[-1500:],
        }


@dataclass
class Validation:
    """The verdict on one task, and the runs it rests on."""

    task_id: str
    verdict: str
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    runs: list[PytestRun] = field(default_factory=list)
    isolation: str | None = None
    env_id: str | None = None
    details: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0
