"""A grade's report and test logs, kept per task as SWE-bench's evaluation keeps its
`report.json` and test output.

Each grade gets `harness/grades/TASK_ID/RUN_ID/` (RUN_ID the grade's `harness_runs` id):
`report.json` (resolved or not, the FAIL_TO_PASS and PASS_TO_PASS tests that passed and
those that did not), `patch.diff` (the patch graded), and each test run's output:
`run-N.stdout.txt`, `run-N.stderr.txt`, `run-N.sandbox.json` (how the limits held), and
for a project built first, `run-N.build.stdout.txt` and so on. Of a log, the last
`LOG_MAX_BYTES` are kept. The folder is filled under a temporary name and renamed, so a
folder named by a run id is complete; the report's sha256 goes into the grade's record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cra.fsutil import atomic_write_text, sha256_file

LOG_MAX_BYTES = 4 << 20
"""The tail of each log file a grade keeps (SWE-bench keeps the whole test output; a
test run here can print without bound)."""
REPORT_NAME = "report.json"
PATCH_NAME = "patch.diff"
_LOG_FILES = (("stdout", "stdout.txt"), ("stderr", "stderr.txt"), ("sandbox", "sandbox.json"))


@dataclass(frozen=True)
class TestsStatus:
    """Of a list of expected tests: those that passed in every run, and the others."""

    __test__ = False  # not a pytest test class

    success: tuple[str, ...]
    failure: tuple[str, ...]

    @classmethod
    def of(cls, expected: list[str], outcomes: dict[str, str]) -> TestsStatus:
        """Split `expected` by `outcomes` (a test not run at all is a failure)."""
        passed = tuple(t for t in expected if outcomes.get(t) == "passed")
        return cls(passed, tuple(t for t in expected if outcomes.get(t) != "passed"))

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-ready lists."""
        return {"success": list(self.success), "failure": list(self.failure)}


@dataclass(frozen=True)
class GradeReport:
    """What `report.json` says of one grade (see the module docstring)."""

    task_id: str
    run_id: int
    label: str
    verdict: str
    patch_exists: bool
    patch_successfully_applied: bool
    isolation: str | None
    env_id: str | None
    fail_to_pass: TestsStatus
    pass_to_pass: TestsStatus
    logs: tuple[str, ...]
    created_at: str

    @property
    def resolved(self) -> bool:
        """Whether every FAIL_TO_PASS and PASS_TO_PASS test passed."""
        return self.verdict == "resolved"

    def as_dict(self) -> dict[str, object]:
        """`report.json`: keyed by task id, as SWE-bench's is by instance id."""
        return {
            self.task_id: {
                "run_id": self.run_id,
                "label": self.label,
                "verdict": self.verdict,
                "resolved": self.resolved,
                "patch_is_None": False,
                "patch_exists": self.patch_exists,
                "patch_successfully_applied": self.patch_successfully_applied,
                "isolation": self.isolation,
                "env_id": self.env_id,
                "tests_status": {
                    "FAIL_TO_PASS": self.fail_to_pass.as_dict(),
                    "PASS_TO_PASS": self.pass_to_pass.as_dict(),
                },
                "logs": list(self.logs),
                "created_at": self.created_at,
            }
        }


@dataclass(frozen=True)
class WrittenReport:
    """A grade's kept folder, its `report.json` and that file's sha256."""

    folder: Path
    path: Path
    sha256: str
    report: GradeReport


def grades_dir(harness_dir: Path) -> Path:
    """Where the grades' folders live."""
    return harness_dir / "grades"


def staging_folder(harness_dir: Path, task_id: str) -> Path:
    """A new, empty folder for a grade of `task_id` still running (renamed by
    :func:`write_report` once the grade's run id is known)."""
    parent = grades_dir(harness_dir) / task_id
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".grading-", dir=parent))


def _tail(source: Path, dest: Path) -> bool:
    """Copy the last `LOG_MAX_BYTES` of the regular file `source` (never through a link)
    to `dest`; False when there is no such file."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - LOG_MAX_BYTES))
        dest.write_bytes(fh.read(LOG_MAX_BYTES))
    return True


def keep_logs(scratch: Path, dest: Path) -> None:
    """Copy into `dest` the output of each test run a grade made under `scratch`
    (`run-N/logs/` and `run-N/build-logs/`), before the scratch folder is removed."""
    for run in sorted(scratch.glob("run-*")):
        for folder, prefix in (("logs", run.name), ("build-logs", f"{run.name}.build")):
            for name, kept in _LOG_FILES:
                _tail(run / folder / name, dest / f"{prefix}.{kept}")


def write_report(staged: Path, report: GradeReport, patch: str, harness_dir: Path) -> WrittenReport:
    """Write the report and the patch into `staged` (holding the logs), then rename it
    to the grade's folder `grades/TASK_ID/RUN_ID`."""
    (staged / PATCH_NAME).write_text(patch, encoding="utf-8", errors="surrogateescape")
    logs = tuple(sorted(p.name for p in staged.iterdir() if p.name != PATCH_NAME))
    report = dataclasses.replace(report, logs=logs)
    atomic_write_text(staged / REPORT_NAME, json.dumps(report.as_dict(), indent=2) + "\n")
    folder = grades_dir(harness_dir) / report.task_id / str(report.run_id)
    if folder.exists():  # a run id is used once; a folder left by a lost database goes
        shutil.rmtree(folder)
    staged.rename(folder)
    path = folder / REPORT_NAME
    return WrittenReport(folder, path, sha256_file(path), report)
