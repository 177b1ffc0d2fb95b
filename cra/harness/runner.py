"""How tests run for one repository: the sandbox, its limits, the environments, and one
run of pytest with cra's plugin."""

from __future__ import annotations

import configparser
import functools
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cra.harness.plugin
from cra.config import ValidateSettings
from cra.db.commits import Commit
from cra.env.build import BuildStep, BuiltEnv, build_env
from cra.errors import CraError
from cra.harness.report import classify, open_report
from cra.harness.verdicts import PytestRun
from cra.repos.layout import RepoPackage, require_package
from cra.repos.manifest import Environment, Manifest, load_manifest
from cra.sandbox import (
    Limits,
    choose_isolation,
    prepare_owned,
    run_sandboxed,
    sandbox_uid,
)
from cra.workspace import Workspace

PLUGIN_DIR = Path(cra.harness.plugin.__file__).resolve().parent
PLUGIN = "cra_pytest_report"


@dataclass(frozen=True)
class Runner:
    """How tests run for one repository: sandbox, limits, environments.

    `build` builds (or reuses) an environment of the package by its id; `scratch_root`
    is where each run's scratch folders go."""

    repo: str
    package: RepoPackage
    settings: ValidateSettings
    scratch_root: Path
    build: Callable[[str], BuiltEnv]
    isolation: str
    uid: int | None
    runs: int
    envs: dict[str, BuiltEnv | CraError] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The package's manifest, read once per runner."""
        return load_manifest(self.package.manifest_path)

    @property
    def timeout_s(self) -> float:
        """The manifest's wall-clock limit for one test run."""
        return float(self.manifest.test["timeout_s"])

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
                self.envs[env_id] = self.build(env_id)
            except CraError as exc:
                self.envs[env_id] = exc
        return self.envs[env_id]

    def limits(self, env: BuiltEnv, manifest_timeout: float) -> tuple[Limits, float]:
        settings = self.settings
        wall = min(settings.run_timeout_s, manifest_timeout)
        per_test = min(settings.per_test_timeout_s, env.per_test_timeout_s)
        limits = Limits(
            wall_s=wall,
            memory_mb=settings.memory_mb,
            max_processes=settings.max_processes,
            cpu_s=max(1, int(wall) + 1),
        )
        return limits, per_test

    def build_project(
        self,
        step: BuildStep,
        work: Path,
        private: Sequence[Path],
        readonly: Sequence[Path],
        run_env: dict[str, str],
        limits: Limits,
        logs: Path,
    ) -> tuple[str, str] | None:
        """Run a commit's build step sandboxed; (verdict class, why) when it failed."""
        step.site.mkdir()
        prepare_owned([step.site], self.uid)
        ran = run_sandboxed(
            step.argv,
            isolation=self.isolation,
            cwd=work,
            writable=[work, *private, step.site],
            readonly=[*readonly, *step.readonly],
            env=run_env,
            limits=limits,
            logs=logs,
            uid=self.uid,
        )
        if ran.start_error:
            return "sandbox_failed", ran.start_error
        if ran.timed_out or ran.returncode != 0:
            why = "timed out" if ran.timed_out else f"exit {ran.returncode}"
            return "env_failed", f"building the project failed ({why}): {ran.stderr_tail}"
        return None

    def run_tests(
        self,
        env: BuiltEnv,
        tree: Path,
        tests: Sequence[str],
        phase: str,
        attempt: int,
        scratch: Path,
        manifest_timeout: float,
        extra: Sequence[str] = (),
    ) -> PytestRun:
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
            return self._run_pytest(
                env,
                work,
                tmp,
                home,
                report,
                tests,
                phase,
                attempt,
                scratch,
                manifest_timeout,
                extra,
            )
        finally:
            os.close(report)

    def _run_pytest(
        self,
        env: BuiltEnv,
        work: Path,
        tmp: Path,
        home: Path,
        report: int,
        tests: Sequence[str],
        phase: str,
        attempt: int,
        scratch: Path,
        manifest_timeout: float,
        extra: Sequence[str],
    ) -> PytestRun:
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
        argv += [
            "-p",
            PLUGIN,
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            "-q",
            "-rN",
            *legacy_config(work, tmp),
            *extra,
            *tests,
        ]
        interpreter = Path(os.path.realpath(env.python)).parents[1]
        readonly = [env.path, interpreter, PLUGIN_DIR]
        step = env.build_step(work, scratch / "site")
        if step is not None:  # the commit's project, built in the same sandbox first
            failed = self.build_project(
                step, work, [tmp, home], readonly, run_env, limits, scratch / "build-logs"
            )
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
        return classify(ran, report, result)


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


def env_fingerprint(env: Environment) -> str:
    """A short hash of an environment's pins (empty for an unusable one)."""
    text = "\n".join(sorted(env.requirements))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def make_runner(workspace: Workspace, repo: str, *, runs: int | None, allow_unsafe: bool) -> Runner:
    """A runner for `repo` with the best sandbox this machine has (the wiring from the
    workspace: what the runner needs of it, it gets here)."""
    package = require_package(workspace.repos_dir, repo)
    load_manifest(package.manifest_path)  # refuse a broken package
    settings = workspace.config.settings.validate
    uid = sandbox_uid(settings.sandbox_uid)
    isolation = choose_isolation(allow_unsafe=allow_unsafe, uid=uid)
    return Runner(
        repo=repo,
        package=package,
        settings=settings,
        scratch_root=workspace.harness_dir / "validate",
        build=lambda env_id: build_env(workspace, repo, env_id=env_id),
        isolation=isolation,
        uid=uid if isolation != "none" else None,
        runs=runs or settings.runs,
    )
