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

import configparser
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cra.harness.plugin
from cra.db import transaction
from cra.env.build import BuildStep, BuiltEnv, build_env
from cra.errors import ConfigError, CraError, NotFound, UsageError
from cra.fsutil import CHUNK, extract_tree, now_iso
from cra.git import archive_tree, git
from cra.harness.run import Commit, _ensure_task, qualified_commits, task_id_for
from cra.harness.testpaths import exercised_modules, is_test_module, is_test_path
from cra.repos.layout import require_package
from cra.repos.manifest import Environment, Manifest, load_manifest
from cra.sandbox import (
    Limits,
    SandboxResult,
    SandboxUnavailable,
    choose_isolation,
    describe_isolation,
    prepare_owned,
    run_sandboxed,
    sandbox_uid,
)
from cra.workspace import Workspace

VERDICTS = ("verified", "no_fail_to_pass", "tests_error", "env_failed", "timeout",
            "sandbox_failed", "env_unusable", "env_mismatch", "bad_report",
            "harness_failed")  # fmt: skip
INFRA = frozenset({"env_failed", "timeout", "sandbox_failed", "env_unusable", "bad_report",
                   "harness_failed"})  # fmt: skip
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
PLUGIN_DIR = Path(cra.harness.plugin.__file__).resolve().parent
PLUGIN = "cra_pytest_report"
FAILING = frozenset({"failed", "error"})
# pytest's exit codes: 0 all passed, 1 some failed, 2 interrupted, 3 internal error,
# 4 usage error, 5 no tests collected.
PYTEST_BROKEN = frozenset({2, 3, 4})
RUN_PROBLEMS = ("bad_report", "sandbox_failed", "env_failed", "timeout")
"""The infrastructure problems a run of the tests can have, the first found deciding."""
OUTCOMES = frozenset({"passed", "failed", "error", "skipped"})
REPORT_FD_MIN = 64
REPORT_MAX_BYTES = 32 << 20
REPORT_MAX_NUMBER = 1e12
REPORT_MESSAGE_CHARS = 2000
NUMBER = (int, float)
REPORT_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "collected": {"count": int},
    "collect_error": {"nodeid": str, "message": str},
    "test": {"nodeid": str, "outcome": str, "duration": NUMBER},
    "finish": {"exitstatus": int},
}
"""Each record kind of the plugin's report, with the fields it must carry and their types."""


class BadReport(CraError, ValueError):
    """The report a run of the tests left cannot be trusted or read."""


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


@dataclass
class ValidateSummary:
    """What a validation pass did."""

    run_id: int
    repo: str
    tasks_total: int
    tasks_done: int = 0
    tasks_skipped: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    isolation: str | None = None
    seconds: float = 0.0
    test_seconds: float = 0.0
    latest: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "repo": self.repo,
            "tasks_total": self.tasks_total,
            "tasks_done": self.tasks_done,
            "tasks_skipped": self.tasks_skipped,
            "verdicts": dict(self.verdicts),
            "verified": self.latest.get("verified", 0),
            "latest_verdicts": dict(self.latest),
            "isolation": self.isolation,
            "seconds": round(self.seconds, 3),
            "test_seconds": round(self.test_seconds, 3),
        }


# -- trees -------------------------------------------------------------------------------


def export_tree(repo_dir: Path, sha: str, dest: Path, paths: Sequence[str] = ()) -> None:
    """Write the tree of `sha` (or only `paths` of it) into `dest`, no git metadata; blobs
    as stored, no attribute (filter, export-ignore, export-subst) applies."""
    extract_tree(archive_tree(repo_dir, sha, paths), dest)


def changed_test_paths(repo_dir: Path, parent: str, sha: str) -> tuple[list[str], list[str]]:
    """The test paths (any file under a test dir, or a test module) the commit changes:
    (present at the commit, deleted by it)."""
    out = git("diff-tree", "-r", "-z", "--no-renames", "--name-status", parent, sha, cwd=repo_dir)
    fields = out.split("\0")
    present, deleted = [], []
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if not path or not is_test_path(path):
            continue
        (deleted if status == "D" else present).append(path)
    return sorted(present), sorted(deleted)


def runnable_tests(paths: Sequence[str]) -> list[str]:
    """The test modules among `paths` that pytest should be pointed at: the same rule
    that lets a commit through mining's tests stage (:func:`is_test_module`)."""
    return [path for path in paths if is_test_module(path)]


def before_tree(repo_dir: Path, commit: Commit, dest: Path) -> list[str]:
    """The parent with the commit's test files applied, in `dest`; return the tests to run."""
    present, deleted = changed_test_paths(repo_dir, commit.parent, commit.sha)
    export_tree(repo_dir, commit.parent, dest)
    if present:
        export_tree(repo_dir, commit.sha, dest, present)
    for path in deleted:
        (dest / path).unlink(missing_ok=True)
    tests = runnable_tests(present)
    if tests or not present:
        return tests
    listing = git("ls-tree", "-r", "--name-only", "--full-tree", commit.sha, cwd=repo_dir)
    return exercised_modules(present, listing.splitlines())


def gold_patch(repo_dir: Path, parent: str, sha: str) -> str:
    """The commit's change to everything but its tests, as a patch `git apply` takes."""
    out = git("diff-tree", "-r", "-z", "--no-renames", "--name-only", parent, sha, cwd=repo_dir)
    paths = [p for p in out.split("\0") if p and not is_test_path(p)]
    if not paths:
        return ""
    return git("diff", "--binary", "--no-renames", parent, sha, "--", *paths, cwd=repo_dir)


# -- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    """How tests run for one repository: sandbox, limits, environments."""

    workspace: Workspace
    repo: str
    isolation: str
    uid: int | None
    runs: int
    envs: dict[str, BuiltEnv | CraError] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The package's manifest, read once per runner."""
        return load_manifest(require_package(self.workspace, self.repo).manifest_path)

    def manifest_env(self, commit: Commit) -> Environment:
        """The manifest's environment for the commit's date."""
        return self.manifest.environment_for(datetime.fromisoformat(commit.authored_at))

    def unusable_env(self, commit: Commit) -> Environment | None:
        """The commit's environment when its era could not be given one, else None."""
        env = self.manifest_env(commit)
        return None if env.usable else env

    def fingerprint(self, commit: Commit) -> str:
        """What the commit's environment is made of; it changes when the era is re-packed."""
        return env_fingerprint(self.manifest_env(commit))

    def older_env(self, commit: Commit) -> BuiltEnv | None:
        """The nearest usable environment before the commit's own, built; None when there
        is none or it cannot be built."""
        own = self.manifest_env(commit)
        envs = list(self.manifest.environments)
        earlier = [e for e in envs[: envs.index(own)] if e.usable]
        if not earlier:
            return None
        built = self.built(earlier[-1].id)
        return None if isinstance(built, CraError) else built

    def env_for(self, commit: Commit) -> BuiltEnv | CraError:
        """The environment the manifest assigns to the commit's date (built once)."""
        env = self.manifest_env(commit)
        with self.lock:
            return self._built(env.id)

    def built(self, env_id: str) -> BuiltEnv | CraError:
        """Environment `env_id`, built once (or the error that stopped its build)."""
        with self.lock:
            return self._built(env_id)

    def _built(self, env_id: str) -> BuiltEnv | CraError:
        if env_id not in self.envs:
            try:
                self.envs[env_id] = build_env(self.workspace, self.repo, env_id=env_id)
            except CraError as exc:
                self.envs[env_id] = exc
        return self.envs[env_id]

    def limits(self, env: BuiltEnv, manifest_timeout: float) -> tuple[Limits, float]:
        config = self.workspace.config
        wall = min(config.settings.validate.run_timeout_s, manifest_timeout)
        per_test = min(config.settings.validate.per_test_timeout_s, env.per_test_timeout_s)
        limits = Limits(
            wall_s=wall,
            memory_mb=config.settings.validate.memory_mb,
            max_processes=config.settings.validate.max_processes,
            cpu_s=max(1, int(wall) + 1),
        )
        return limits, per_test

    def build_project(
        self, step: BuildStep, work: Path, private: Sequence[Path], readonly: Sequence[Path],
        run_env: dict[str, str], limits: Limits, logs: Path,
    ) -> tuple[str, str] | None:  # fmt: skip
        """Run a commit's build step sandboxed; (verdict class, why) when it failed."""
        step.site.mkdir()
        prepare_owned([step.site], self.uid)
        ran = run_sandboxed(step.argv, isolation=self.isolation, cwd=work,
                            writable=[work, *private, step.site],
                            readonly=[*readonly, *step.readonly], env=run_env,
                            limits=limits, logs=logs, uid=self.uid)  # fmt: skip
        if ran.start_error:
            return "sandbox_failed", ran.start_error
        if ran.timed_out or ran.returncode != 0:
            why = "timed out" if ran.timed_out else f"exit {ran.returncode}"
            return "env_failed", f"building the project failed ({why}): {ran.stderr_tail}"
        return None

    def run_tests(
        self, env: BuiltEnv, tree: Path, tests: Sequence[str], phase: str, attempt: int,
        scratch: Path, manifest_timeout: float, extra: Sequence[str] = (),
    ) -> PytestRun:  # fmt: skip
        """Run `tests` once on a private copy of `tree`, sandboxed; parse the report.
        `extra` goes to pytest before the tests (e.g. `--collect-only`)."""
        if scratch.exists():
            shutil.rmtree(scratch)
        work, tmp, home = (scratch / n for n in ("work", "tmp", "home"))
        shutil.copytree(tree, work, symlinks=True)
        for folder in (tmp, home):
            folder.mkdir(parents=True)
        # Only the run's own folders are the sandbox uid's: the report and the logs
        # beside them stay cra's.
        prepare_owned([work, tmp, home], self.uid)
        report = open_report(scratch)
        try:
            return self._run_pytest(env, work, tmp, home, report, tests, phase, attempt,
                                    scratch, manifest_timeout, extra)  # fmt: skip
        finally:
            os.close(report)

    def _run_pytest(
        self, env: BuiltEnv, work: Path, tmp: Path, home: Path, report: int,
        tests: Sequence[str], phase: str, attempt: int, scratch: Path,
        manifest_timeout: float, extra: Sequence[str],
    ) -> PytestRun:  # fmt: skip
        result = PytestRun(phase, attempt)
        limits, per_test = self.limits(env, manifest_timeout)
        base = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "CRA_REPORT_FD": str(report),
            "PYTHONHASHSEED": "0",
        }
        run_env = env.run_env(work, base=base, site=scratch / "site")
        run_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (run_env.get("PYTHONPATH", ""), str(PLUGIN_DIR)) if p
        )
        argv = env.test_argv(per_test_timeout=False)
        if "pytest" in argv:
            argv.append(f"--timeout={per_test:g}")
        argv += ["-p", PLUGIN, "-p", "no:cacheprovider", "--continue-on-collection-errors",
                 "-q", "-rN", *legacy_config(work, tmp), *extra, *tests]  # fmt: skip
        interpreter = Path(os.path.realpath(env.python)).parents[1]
        readonly = [env.path, interpreter, PLUGIN_DIR]
        step = env.build_step(work, scratch / "site")
        if step is not None:  # the commit's project, built in the same sandbox first
            failed = self.build_project(step, work, [tmp, home], readonly, run_env, limits,
                                        scratch / "build-logs")  # fmt: skip
            if failed is not None:
                result.problem, result.detail = failed
                return result
        ran = run_sandboxed(
            argv,
            isolation=self.isolation,
            cwd=work,
            writable=[work, tmp, home],
            readonly=readonly,
            env=run_env,
            limits=limits,
            logs=scratch / "logs",
            uid=self.uid,
            pass_fds=(report,),
        )
        return _classify(ran, report, result)


def _classify(ran: SandboxResult, report: int, result: PytestRun) -> PytestRun:
    """Fill `result` from the run and its report, and say whether the run is usable."""
    result.returncode, result.timed_out, result.seconds = (
        ran.returncode, ran.timed_out, ran.seconds
    )  # fmt: skip
    if ran.start_error:
        result.problem, result.detail = "sandbox_failed", ran.start_error
        return result
    result.detail = ran.stderr_tail or ran.stdout_tail
    try:
        finished = _read_report(report, result)
    except BadReport as exc:
        result.problem, result.detail = "bad_report", f"{exc}\n{result.detail}"
        result.outcomes.clear()
        result.collect_errors.clear()
        result.test_seconds = 0.0
        return result
    if ran.timed_out:
        result.problem = "timeout"
    elif result.collected is None and not finished:
        # pytest never started collecting: the sandbox or the environment failed.
        tool_failed = any(
            line.startswith(("bwrap:", "unshare:", "setpriv:"))
            for line in ran.stderr_tail.splitlines()
        )
        result.problem = "sandbox_failed" if tool_failed else "env_failed"
    elif not finished:
        result.problem = "tests_error"
        result.detail = "pytest ended without finishing the session\n" + result.detail
    elif result.exitstatus != ran.returncode:
        result.problem = "tests_error"
        result.detail = f"pytest reported exit {result.exitstatus}, process {ran.returncode}"
    elif result.exitstatus in PYTEST_BROKEN:
        result.problem = "tests_error"
    elif result.exitstatus in (0, 1) and result.collected != len(result.outcomes):
        result.problem = "tests_error"
        result.detail = f"{result.collected} tests collected but {len(result.outcomes)} reported"
    return result


def legacy_config(work: Path, where: Path) -> list[str]:
    """pytest options that make a configuration form pytest no longer reads work.

    A `[pytest]` section in `setup.cfg` (pytest < 4) now stops pytest before collection
    ("no longer supported"); its options are copied into an ini file under `where` and
    given with `-c`, the tree staying the rootdir. Empty when nothing needs it."""
    if any((work / name).is_file() for name in ("pytest.ini", ".pytest.ini")):
        return []
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(work / "setup.cfg", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return []
    if not parser.has_section("pytest"):
        return []
    ini = configparser.ConfigParser(interpolation=None)
    ini["pytest"] = dict(parser.items("pytest"))
    target = where / "cra-legacy-pytest.ini"
    with target.open("w", encoding="utf-8") as handle:
        ini.write(handle)
    return ["-c", str(target), f"--rootdir={work}"]


def open_report(folder: Path) -> int:
    """A new, empty file for the plugin's report, open for reading and appending, with no
    name left anywhere (the run can neither swap it nor reach it by a path); the
    descriptor is at least `REPORT_FD_MIN`, above those the sandbox's shell uses."""
    path = folder / f".report-{os.getpid()}-{threading.get_ident()}"
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.unlink(path)
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, REPORT_FD_MIN)
    finally:
        os.close(fd)


def read_report(fd: int) -> list[dict[str, object]]:
    """The plugin's records from the report cra opened (see :func:`open_report`), each
    checked for its kind and fields. A last line cut short by a kill is left out;
    anything else malformed raises BadReport with the reason."""
    size = os.fstat(fd).st_size
    if size > REPORT_MAX_BYTES:
        raise BadReport(f"the report has {size} bytes, more than the {REPORT_MAX_BYTES} allowed")
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    lines = b"".join(chunks).split(b"\n")
    return [_record_of(n, line) for n, line in enumerate(lines[:-1], start=1) if line.strip()]


def _record_of(n: int, line: bytes) -> dict[str, object]:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadReport(f"report line {n} is not UTF-8") from None
    except json.JSONDecodeError:
        raise BadReport(f"report line {n} is not JSON") from None
    kind = record.get("kind") if isinstance(record, dict) else None
    if not isinstance(kind, str) or kind not in REPORT_FIELDS:
        raise BadReport(f"report line {n} is not a record of the plugin")
    for name, wanted in REPORT_FIELDS[kind].items():
        value = record.get(name)
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise BadReport(f"report line {n} ({kind}): {name} is missing or not a {wanted}")
        if isinstance(value, str):
            # Lone surrogates (from file names that are not UTF-8) cannot be stored.
            record[name] = value.encode("utf-8", "backslashreplace").decode("utf-8")
        elif not 0 <= value < REPORT_MAX_NUMBER:
            raise BadReport(f"report line {n} ({kind}): {name} is out of range")
    if record["kind"] == "test" and record["outcome"] not in OUTCOMES:
        raise BadReport(f"report line {n}: unknown outcome {str(record['outcome'])[:40]!r}")
    return record


def _read_report(fd: int, result: PytestRun) -> bool:
    """Fill `result` from the report's records; return whether the session finished."""
    finished = False
    for record in read_report(fd):
        kind = record["kind"]
        if kind == "collected":
            result.collected = int(record["count"])  # type: ignore[call-overload]
        elif kind == "collect_error":
            message = str(record["message"])[-REPORT_MESSAGE_CHARS:]
            result.collect_errors[str(record["nodeid"])] = message
        elif kind == "test":
            duration = float(record["duration"])  # type: ignore[arg-type]
            result.outcomes[str(record["nodeid"])] = (str(record["outcome"]), duration)
            result.test_seconds += duration
        elif kind == "finish":
            result.exitstatus = int(record["exitstatus"])  # type: ignore[call-overload]
            finished = True
    return finished


def _outcome_in(run: PytestRun, test_id: str) -> str:
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
        seen = {_outcome_in(r, test_id) for r in runs}
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


def _manifest_timeout(workspace: Workspace, repo: str) -> float:
    manifest = load_manifest(require_package(workspace, repo).manifest_path)
    return float(manifest.test["timeout_s"])


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
        v.details = {"error": f"{type(exc).__name__}: {exc}"[-1500:],
                     "hint": getattr(exc, "hint", None)}  # fmt: skip
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
    repo_dir = require_package(runner.workspace, runner.repo).repo_dir
    timeout = _manifest_timeout(runner.workspace, runner.repo)
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


def _record(conn: sqlite3.Connection, run_id: int, v: Validation, kind: str) -> None:
    now = now_iso()
    with transaction(conn):
        for r in v.runs:
            conn.executemany(
                "INSERT INTO test_runs (task_id, run_id, phase, attempt, test_id, outcome, "
                "duration_s, env_id, isolation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (v.task_id, run_id, r.phase, r.attempt, test_id, outcome, duration,
                     v.env_id, v.isolation, now)
                    for test_id, (outcome, duration) in r.outcomes.items()
                ],
            )  # fmt: skip
        conn.execute(
            "INSERT INTO outcomes (task_id, run_id, kind, verdict, fail_to_pass, pass_to_pass, "
            "flaky, isolation, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                v.task_id,
                run_id,
                kind,
                v.verdict,
                json.dumps(v.fail_to_pass),
                json.dumps(v.pass_to_pass),
                json.dumps(v.flaky),
                v.isolation,
                json.dumps({"env_id": v.env_id, **v.details}),
                now,
            ),
        )


def spread(items: list[Commit], n: int) -> list[Commit]:
    """`n` of `items` at even steps, the first and the last included."""
    if n <= 0 or len(items) <= n:
        return list(items)
    if n == 1:
        return [items[-1]]
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def env_fingerprint(env: Environment) -> str:
    """A short hash of an environment's pins (empty for an unusable one)."""
    text = "\n".join(sorted(env.requirements))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _details(text: str | None) -> dict[str, object]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def infra_attempts(conn: sqlite3.Connection, task_id: str, fingerprint: str) -> int:
    """How many of the task's latest validations in a row ended in an infrastructure
    verdict with this environment fingerprint."""
    rows = conn.execute(
        "SELECT verdict, details FROM outcomes WHERE task_id = ? AND kind = 'validation' "
        "ORDER BY id DESC",
        (task_id,),
    )
    count = 0
    for verdict, details in rows:
        if verdict not in INFRA or _details(details).get("env_fingerprint") != fingerprint:
            break
        count += 1
    return count


def _finished(conn: sqlite3.Connection, task_id: str, fingerprint: Callable[[], str]) -> bool:
    row = conn.execute(
        "SELECT verdict, details FROM outcomes WHERE task_id = ? AND kind = 'validation' "
        "ORDER BY id DESC LIMIT 1",
        (task_id,),
    ).fetchone()
    if row is None:
        return False
    if row[0] in INFRA:
        return infra_attempts(conn, task_id, fingerprint()) >= INFRA_ATTEMPTS
    if row[0] == ENV_MISMATCH:
        return _details(row[1]).get("env_fingerprint") == fingerprint()
    return True


def _count_attempt(conn: sqlite3.Connection, v: Validation) -> None:
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


def _repo_id(conn: sqlite3.Connection, repo: str) -> int:
    row = conn.execute("SELECT id FROM repos WHERE name = ?", (repo,)).fetchone()
    mined = (
        row is not None
        and conn.execute("SELECT 1 FROM commits WHERE repo_id = ? LIMIT 1", (row["id"],)).fetchone()
    )
    if not mined:
        raise NotFound(
            f"repository {repo!r} has not been mined yet",
            hint=f"run `cra harness mine --repo {repo}` first",
        )
    return int(row["id"])


def make_runner(workspace: Workspace, repo: str, *, runs: int | None, allow_unsafe: bool) -> Runner:
    """A runner for `repo` with the best sandbox this machine has."""
    load_manifest(require_package(workspace, repo).manifest_path)  # refuse a broken package
    uid = sandbox_uid(workspace.config.settings.validate.sandbox_uid)
    isolation = choose_isolation(allow_unsafe=allow_unsafe, uid=uid)
    return Runner(
        workspace,
        repo,
        isolation,
        uid if isolation != "none" else None,
        runs or workspace.config.settings.validate.runs,
    )


def validate_repo(
    workspace: Workspace,
    repo: str,
    options: ValidateOptions,
    *,
    progress: Progress | None = None,
) -> ValidateSummary:
    """Validate `repo`'s qualifying commits; skip those with a finished verdict."""
    started = time.perf_counter()
    runner = make_runner(workspace, repo, runs=options.runs, allow_unsafe=options.allow_unsafe)
    with closing(workspace.raw_db()) as conn:
        repo_id = _repo_id(conn, repo)
        commits = qualified_commits(conn, repo_id, options.since)
        if options.sample is not None:
            commits = spread(commits, options.sample)
        if options.limit is not None:
            commits = commits[: options.limit]
        params = {"runs": runner.runs, "isolation": runner.isolation, "limit": options.limit,
                  "force": options.force, "jobs": options.jobs,
                  "sandbox": describe_isolation(runner.isolation)}  # fmt: skip
        with transaction(conn):
            run_id = conn.execute(
                "INSERT INTO harness_runs (repo_id, kind, params, started_at) "
                "VALUES (?, 'validate', ?, ?)",
                (repo_id, json.dumps(params), now_iso()),
            ).lastrowid
        summary = ValidateSummary(int(run_id), repo, len(commits), isolation=runner.isolation)
        status, error = "interrupted", None
        scratch_root = workspace.harness_dir / "validate"
        scratch_root.mkdir(parents=True, exist_ok=True)
        try:
            if progress:
                progress(0, len(commits), "")
            todo = []
            for commit in commits:
                task_id = _ensure_task(conn, repo_id, repo, commit)
                current = functools.partial(runner.fingerprint, commit)
                if not options.force and _finished(conn, task_id, current):
                    summary.tasks_skipped += 1
                else:
                    todo.append(commit)
            done = summary.tasks_skipped
            if progress:
                progress(done, len(commits), "")

            def work(commit: Commit) -> Validation:
                scratch = Path(tempfile.mkdtemp(prefix=f"{commit.sha[:12]}-", dir=scratch_root))
                return validate_commit(runner, commit, scratch)

            pool = ThreadPoolExecutor(max_workers=options.jobs)
            try:
                # Each verdict is recorded as soon as it is known, in this thread.
                for v in pool.map(work, todo):
                    _count_attempt(conn, v)
                    _record(conn, int(run_id), v, "validation")
                    summary.tasks_done += 1
                    summary.verdicts[v.verdict] = summary.verdicts.get(v.verdict, 0) + 1
                    summary.test_seconds += sum(r.test_seconds for r in v.runs)
                    done += 1
                    if progress:
                        progress(done, len(commits), v.task_id)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            status = "finished"
            for commit in commits:
                row = conn.execute(
                    "SELECT verdict FROM outcomes WHERE task_id = ? AND kind = 'validation' "
                    "ORDER BY id DESC LIMIT 1",
                    (task_id_for(repo, commit.sha),),
                ).fetchone()
                if row is not None:
                    summary.latest[row[0]] = summary.latest.get(row[0], 0) + 1
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with transaction(conn):
                conn.execute(
                    "UPDATE harness_runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                    (status, now_iso(), error, run_id),
                )
    summary.seconds = time.perf_counter() - started
    return summary


# -- grading patches ---------------------------------------------------------------------


@dataclass
class Grade:
    """How a patch did against a verified task's FAIL_TO_PASS and PASS_TO_PASS tests."""

    task_id: str
    verdict: str  # resolved, unresolved, patch_failed, or an infrastructure verdict
    fail_to_pass: dict[str, str] = field(default_factory=dict)
    pass_to_pass: dict[str, str] = field(default_factory=dict)
    isolation: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready grade."""
        return {
            "task_id": self.task_id,
            "verdict": self.verdict,
            "fail_to_pass": self.fail_to_pass,
            "pass_to_pass": self.pass_to_pass,
            "isolation": self.isolation,
            "detail": self.detail,
        }


def _task_commit(conn: sqlite3.Connection, task_id: str) -> tuple[str, Commit]:
    row = conn.execute(
        "SELECT r.name, c.id, c.sha, c.parent_sha, c.authored_at, c.task_text, "
        "c.files_source, c.files_tests FROM tasks t JOIN commits c ON c.id = t.commit_id "
        "JOIN repos r ON r.id = t.repo_id WHERE t.task_id = ?",
        (task_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no task {task_id!r}", hint="task ids look like REPO@SHA12")
    return row[0], Commit(
        row[1], row[2], row[3], row[4], row[5] or "",
        tuple(json.loads(row[6])), tuple(json.loads(row[7])),
    )  # fmt: skip


def task_gold_patch(workspace: Workspace, task_id: str) -> str:
    """The task's gold patch: its commit's change minus the tests."""
    with closing(workspace.raw_db()) as conn:
        repo, commit = _task_commit(conn, task_id)
    return gold_patch(require_package(workspace, repo).repo_dir, commit.parent, commit.sha)


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
    resolved when every FAIL_TO_PASS and PASS_TO_PASS test passes in every run."""
    if runs < 1:
        raise UsageError(f"--runs must be >= 1, got {runs}")
    with closing(workspace.raw_db()) as conn:
        repo, commit = _task_commit(conn, task_id)
        row = conn.execute(
            "SELECT verdict, fail_to_pass, pass_to_pass FROM outcomes WHERE task_id = ? "
            "AND kind = 'validation' ORDER BY id DESC LIMIT 1",
            (task_id,),
        ).fetchone()
        if row is None or row[0] != "verified":
            raise UsageError(
                f"task {task_id} is not verified"
                + (f" (its validation verdict is {row[0]})" if row else " (never validated)"),
                hint=f"run `cra harness validate --repo {repo}`; only verified tasks are graded",
            )
        f2p, p2p = json.loads(row[1]), json.loads(row[2])
        runner = make_runner(workspace, repo, runs=runs, allow_unsafe=allow_unsafe)
        env = runner.env_for(commit)
        grade = Grade(task_id, "unresolved", isolation=runner.isolation)
        scratch_root = workspace.harness_dir / "validate"
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"grade-{commit.sha[:12]}-", dir=scratch_root))
        test_runs: list[PytestRun] = []
        try:
            if isinstance(env, CraError):
                grade.verdict, grade.detail = "env_failed", str(env)
            else:
                _grade_in(runner, commit, env, (patch, label), scratch, grade, test_runs,
                          (f2p, p2p))  # fmt: skip
        except (UsageError, ConfigError):
            raise
        except COMMIT_ERRORS as exc:
            test_runs.clear()
            grade.verdict, grade.detail = "harness_failed", f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        with transaction(conn):
            run_id = conn.execute(
                "INSERT INTO harness_runs (repo_id, kind, params, status, started_at, "
                "finished_at) VALUES ((SELECT repo_id FROM tasks WHERE task_id = ?), "
                "'grade', ?, 'finished', ?, ?)",
                (task_id, json.dumps({"runs": runs, "label": label}), now_iso(), now_iso()),
            ).lastrowid
        v = Validation(
            task_id, grade.verdict,
            fail_to_pass=sorted(t for t, o in grade.fail_to_pass.items() if o == "passed"),
            pass_to_pass=sorted(t for t, o in grade.pass_to_pass.items() if o == "passed"),
            runs=test_runs, isolation=runner.isolation,
            env_id=None if isinstance(env, CraError) else env.env_id,
            details={"label": label, "detail": grade.detail[-1500:],
                     "expected_fail_to_pass": f2p, "expected_pass_to_pass": p2p,
                     "runs": [r.summary() for r in test_runs]},
        )  # fmt: skip
        _record(conn, int(run_id), v, "patch_grade")
    return grade


def _grade_in(
    runner: Runner, commit: Commit, env: BuiltEnv, labelled: tuple[str, str], scratch: Path,
    grade: Grade, test_runs: list[PytestRun], expected: tuple[list[str], list[str]],
) -> None:  # fmt: skip
    """Grade the (patch, label) on the task's parent plus its tests in `env`, filling
    `grade` and `test_runs`; `expected` are the FAIL_TO_PASS and PASS_TO_PASS tests."""
    patch, label = labelled
    tree = scratch / "tree"
    tests = before_tree(require_package(runner.workspace, runner.repo).repo_dir, commit, tree)
    applied = _apply(tree, patch)
    if applied is not None:
        grade.verdict, grade.detail = "patch_failed", applied
        return
    timeout = _manifest_timeout(runner.workspace, runner.repo)
    for attempt in range(1, runner.runs + 1):
        test_runs.append(runner.run_tests(
            env, tree, tests, label, attempt, scratch / f"run-{attempt}", timeout
        ))  # fmt: skip
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
        seen = [_outcome_in(r, test_id) for r in runs]
        return next((o for o in seen if o != "passed"), "passed")

    grade.fail_to_pass = {t: worst(t) for t in f2p}
    grade.pass_to_pass = {t: worst(t) for t in p2p}
    ok = all(o == "passed" for o in (*grade.fail_to_pass.values(), *grade.pass_to_pass.values()))
    grade.verdict = "resolved" if ok else "unresolved"


def verified_yield(conn: sqlite3.Connection, repo: str | None = None) -> list[dict[str, object]]:
    """Per repository: tasks validated, each verdict's count (latest verdict per task),
    and the verified yield among tasks whose validation was not an infrastructure failure."""
    rows = conn.execute(
        "SELECT r.name, o.verdict, count(*) FROM outcomes o JOIN tasks t USING (task_id) "
        "JOIN repos r ON r.id = t.repo_id WHERE o.kind = 'validation' "
        "AND o.id = (SELECT max(id) FROM outcomes WHERE task_id = o.task_id "
        "AND kind = 'validation') AND (? IS NULL OR r.name = ?) "
        "GROUP BY r.name, o.verdict ORDER BY r.name",
        (repo, repo),
    ).fetchall()
    out: dict[str, dict[str, object]] = {}
    for name, verdict, n in rows:
        entry = out.setdefault(name, {"repo": name, "validated": 0, "verdicts": {}})
        entry["verdicts"][verdict] = n  # type: ignore[index]
        entry["validated"] = int(entry["validated"]) + n  # type: ignore[call-overload]
    for entry in out.values():
        verdicts: dict[str, int] = entry["verdicts"]  # type: ignore[assignment]
        judged = sum(n for v, n in verdicts.items() if v not in NOT_JUDGED)
        entry["verified"] = verdicts.get("verified", 0)
        entry["yield_pct"] = (
            round(100 * verdicts.get("verified", 0) / judged, 1) if judged else None
        )
    return list(out.values())


__all__ = [
    "GRADES",
    "VERDICTS",
    "Grade",
    "SandboxUnavailable",
    "ValidateOptions",
    "ValidateSummary",
    "Validation",
    "grade_patch",
    "judge",
    "task_gold_patch",
    "validate_repo",
]
