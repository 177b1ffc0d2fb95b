"""`cra env build`: a virtualenv from a repo package's `packages/` only, with no network.

uv builds it (`uv venv --relocatable`, `uv pip install --offline --no-index --no-build
--find-links packages/`); pip with `--no-index --only-binary :all:` is the fallback when
uv is missing or `--installer pip` is asked for. The host only ever installs wheels: no
sdist, `setup.py` or build backend of the repository runs outside the sandbox, whatever
the manifest says. A project that needs a build (editable or installed modes: compiled
extensions, generated version files) is built per commit, inside the sandbox, in that
commit's tree copy (`BuiltEnv.build_step`), before its tests.

The environment lives in `harness/envs/KEY`, where KEY hashes the interpreter version,
the sha256 of every wheel installed and the install mode: building again is a no-op. It
is built in a temporary folder and renamed into place, with `cra-env.json` describing
it. Every wheel's sha256 is checked before it is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cra.errors import ChecksumMismatch, CraError, UsageError
from cra.fsutil import atomic_write_text, now_iso, sha256_file
from cra.repos.layout import RepoPackage, require_package
from cra.repos.manifest import Environment, Manifest, load_manifest
from cra.repos.wheels import best_wheel
from cra.tools import ToolError, pip_argv, run_tool, tool_env, uv_binary
from cra.workspace import Workspace

BUILDER_VERSION = 3
BUILD_SCRIPT_DIR = Path(__file__).resolve().parents[1] / "project_build"
"""Holds the script a sandboxed build step runs; the sandbox shows it read-only."""
BUILD_SCRIPT = BUILD_SCRIPT_DIR / "cra_build_project.py"
MARKER = "cra-env.json"
Echo = Callable[[str], None]


class MissingRequirement(CraError, LookupError):
    """A pinned requirement has no wheel in `packages/` that this machine can install."""

    def __init__(self, requirement: str, package: str, why: str) -> None:
        super().__init__(
            f"requirement {requirement} of package {package!r}: {why}",
            hint=f"re-pack on a connected machine with `cra repo pack ... --requirement "
            f"'{requirement}'` (or --find-links DIR holding a wheel of it for this Python), "
            "then import the package again",
        )
        self.requirement = requirement


@dataclass(frozen=True)
class BuildStep:
    """A build of one commit's project, to run in the sandbox before its tests.

    `argv` writes only into the tree copy and `site`; `readonly` are the extra paths the
    sandbox must show (the build script)."""

    argv: tuple[str, ...]
    site: Path
    readonly: tuple[Path, ...]


@dataclass(frozen=True)
class BuiltEnv:
    """A ready environment: where it is, how it was made, how to run tests in it."""

    path: Path
    key: str
    package: str
    env_id: str
    mode: str
    pythonpath: tuple[str, ...]
    env_vars: dict[str, str]
    test_command: str
    per_test_timeout_s: float
    installer: str
    wheels: int
    cached: bool
    seconds: float
    python_version: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / "bin" / "python"

    @property
    def needs_build(self) -> bool:
        """Whether each commit's project is built (in the sandbox) before its tests."""
        return self.mode in ("editable", "installed")

    def build_step(self, checkout: Path, site: Path) -> BuildStep | None:
        """The sandboxed build of the project in `checkout` into `site` (a folder put on
        `PYTHONPATH` by `run_env`), or None when the mode needs no build (pythonpath)."""
        if not self.needs_build:
            return None
        script = (str(self.python), "-I", str(BUILD_SCRIPT))
        where = (str(Path(checkout).absolute()), str(Path(site).absolute()))
        argv = (*script, *where, self.mode, *self.pythonpath)
        return BuildStep(argv, Path(site), (BUILD_SCRIPT_DIR,))

    def run_env(
        self, checkout: Path, base: dict[str, str] | None = None, site: Path | None = None
    ) -> dict[str, str]:
        """The process environment for running the tests of `checkout` in this env; `site`
        is where its build step unpacked the project (editable and installed modes)."""
        env = dict(os.environ if base is None else base)
        for var in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV"):
            env.pop(var, None)
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONNOUSERSITE"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        paths = []
        if self.mode in ("pythonpath", "editable"):
            # The commit's own tree comes first, so its tests import its code; its build
            # (editable mode) added what the tree lacked, such as a compiled extension.
            paths = [str((Path(checkout) / entry).absolute()) for entry in self.pythonpath]
        if site is not None and self.needs_build:
            paths.append(str(Path(site).absolute()))  # the built wheel: metadata, the rest
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(self.env_vars)
        return env

    def test_argv(self, *extra: str, per_test_timeout: bool = True) -> list[str]:
        """The test command as argv, `python` meaning this env's interpreter."""
        argv = shlex.split(self.test_command)
        if argv and re.fullmatch(r"python(3(\.\d+)?)?", argv[0]):
            argv[0] = str(self.python)
        if per_test_timeout and "pytest" in argv:
            argv.append(f"--timeout={self.per_test_timeout_s:g}")
        return [*argv, *extra]


def find_interpreter(python: str) -> Path:
    """An interpreter of version `python` (X.Y) on this machine, with no download."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return Path(sys.executable)
    found = shutil.which(f"python{python}")
    if found:
        return Path(found)
    raise CraError(
        f"Python {python} is not installed on this machine",
        hint=f"install Python {python}, or re-pack the repository with --python "
        f"{sys.version_info.major}.{sys.version_info.minor}",
    )


def _interpreter_version(interpreter: Path) -> str:
    if interpreter == Path(sys.executable):
        return platform.python_version()
    out = subprocess.run(
        [str(interpreter), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _choose_installer(requested: str) -> tuple[str, Path | None]:
    if requested not in ("uv", "pip"):
        raise UsageError(f"unknown installer {requested!r}", hint="use uv or pip")
    uv = uv_binary() if requested == "uv" else None
    return ("uv", uv) if uv is not None else ("pip", None)


def env_key(
    manifest: Manifest,
    env: Environment,
    *,
    python_version: str,
    installer: str,
) -> str:
    """The cache key of an environment: what it installs, with what, for which Python."""
    shas = sorted(manifest.wheel(f).sha256 for f in env.wheels)
    data = {
        "builder": BUILDER_VERSION,
        "python": python_version,
        "mode": manifest.importable["mode"],
        "installer": installer,
        "wheels": shas,
        "env": manifest.importable["env"],
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _check_wheels(package: RepoPackage, manifest: Manifest, env: Environment) -> list[str]:
    """Pins whose wheel is there, compatible and intact; raise for the first that is not."""
    for pin in env.requirements:
        wheel = best_wheel(pin, env.wheels, manifest.python)
        if wheel is None:
            raise MissingRequirement(
                pin,
                manifest.name,
                f"no wheel in packages/ for Python {manifest.python} on "
                f"this platform (environment {env.id})",
            )
        path = package.packages_dir / wheel
        if not path.is_file():
            raise MissingRequirement(pin, manifest.name, f"packages/{wheel} is missing")
        expected = manifest.wheel(wheel).sha256
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumMismatch(path, expected=expected, actual=actual)
    return list(env.requirements)


def _missing_from_output(output: str) -> str | None:
    for pattern in (
        r"Because ([A-Za-z0-9_.\-\[\]]+(?:[=<>!~]=?[^\s,]+)?) was not found in the provided "
        r"package locations",
        r"Because there is no version of ([A-Za-z0-9_.\-\[\]]+(?:[=<>!~]=?[^\s,]+)?)",
        r"No matching distribution found for ([^\s]+)",
    ):
        match = re.search(pattern, output)
        if match:
            return match.group(1)
    return None


def _install(
    installer: str,
    uv: Path | None,
    venv: Path,
    interpreter: Path,
    package: RepoPackage,
    pins_file: Path,
    extra_env: dict[str, str],
    uv_cache: Path,
    name: str,
) -> None:
    """Create `venv` and install the pinned wheels: wheels only, nothing is ever built."""
    env = tool_env(uv_cache, offline=True)
    env.update(extra_env)
    links = str(package.packages_dir)
    hint = "re-pack with --requirement/--find-links so packages/ holds every wheel it needs"
    try:
        if installer == "uv" and uv is not None:
            run_tool(
                [
                    str(uv),
                    "venv",
                    "--quiet",
                    "--relocatable",
                    "--python",
                    str(interpreter),
                    str(venv),
                ],
                what="uv venv",
                env=env,
            )
            base = [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                "--offline",
                "--no-index",
                "--no-build",
                "--find-links",
                links,
            ]
            tool = "uv pip install"
        else:
            run_tool(
                [str(interpreter), "-m", "venv", "--without-pip", str(venv)],
                what="python -m venv",
                env=env,
            )
            base = [
                *pip_argv(),
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "--quiet",
                "--no-index",
                "--only-binary",
                ":all:",
                "--find-links",
                links,
            ]
            tool = "pip install"
        run_tool([*base, "-r", str(pins_file)], what=tool, env=env, hint=hint)
    except ToolError as exc:
        missing = _missing_from_output(exc.output)
        if missing:
            raise MissingRequirement(missing, name, "no wheel in packages/ satisfies it") from None
        raise


def _refuse_project_dir(project_dir: Path | None) -> None:
    """No checkout is built on the host: a `project_dir` is a usage error."""
    if project_dir is not None:
        raise UsageError(
            f"--project-dir {project_dir}: the project is never built on the host",
            hint="each commit's tree is built inside the sandbox before its tests; "
            "build the environment without --project-dir",
        )


def _usable_environment(manifest: Manifest, env_id: str | None, name: str) -> Environment:
    """The environment `env_id` (the newest usable one when None); raise if it is unusable."""
    env = manifest.environment(env_id)
    if not env.usable:
        raise CraError(
            f"era {env.id} of {name} has no environment: {env.unusable}",
            hint="re-pack it on a connected machine (cra repo pack --replace)",
        )
    return env


def _marker(
    built: BuiltEnv, manifest: Manifest, env: Environment, pins: list[str]
) -> dict[str, object]:
    """What the environment's marker file records: its key, inputs and build time."""
    return {
        "key": built.key,
        "package": built.package,
        "environment": env.id,
        "installer": built.installer,
        "python": built.python_version,
        "mode": built.mode,
        "requirements": pins,
        "wheels": {f: manifest.wheel(f).sha256 for f in env.wheels},
        "manifest_head": manifest.head,
        "built_at": now_iso(),
        "seconds": round(built.seconds, 3),
    }


def build_env(
    workspace: Workspace,
    name: str,
    *,
    env_id: str | None = None,
    installer: str | None = None,
    project_dir: Path | None = None,
    echo: Echo | None = None,
) -> BuiltEnv:
    """Build (or reuse) the offline environment `env_id` of package `name`.

    Only wheels are installed; the project itself is built per commit in the sandbox
    (`BuiltEnv.build_step`), so `project_dir` is refused: no checkout is built here."""
    _refuse_project_dir(project_dir)
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    package = require_package(workspace.repos_dir, name)
    manifest = load_manifest(package.manifest_path)
    env = _usable_environment(manifest, env_id, name)
    chosen, uv = _choose_installer(installer or workspace.config.settings.env.installer)
    interpreter = find_interpreter(manifest.python)
    python_version = _interpreter_version(interpreter)
    mode = manifest.importable["mode"]
    key = env_key(manifest, env, python_version=python_version, installer=chosen)
    envs_dir = workspace.harness_dir / "envs"
    target = envs_dir / key

    def result(cached: bool) -> BuiltEnv:
        return BuiltEnv(
            path=target,
            key=key,
            package=name,
            env_id=env.id,
            mode=mode,
            pythonpath=tuple(manifest.importable["pythonpath"]),
            env_vars=dict(manifest.importable["env"]),
            test_command=manifest.test["command"],
            per_test_timeout_s=float(manifest.test["per_test_timeout_s"]),
            installer=chosen,
            wheels=len(env.wheels),
            cached=cached,
            seconds=time.perf_counter() - started,
            python_version=python_version,
        )

    if (target / MARKER).is_file():
        return result(True)
    pins = _check_wheels(package, manifest, env)
    envs_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=envs_dir))
    try:
        pins_file = scratch / "requirements.txt"
        pins_file.write_text("\n".join(pins) + "\n", encoding="utf-8")
        venv = scratch / "venv"
        say(f"building environment {env.id} of {name} with {chosen}: {len(pins)} wheels")
        _install(
            chosen,
            uv,
            venv,
            interpreter,
            package,
            pins_file,
            dict(manifest.importable["env"]),
            workspace.harness_dir / "uv-cache",
            name,
        )
        marker = _marker(result(False), manifest, env, pins)
        atomic_write_text(venv / MARKER, json.dumps(marker, indent=2) + "\n")
        try:
            venv.rename(target)
        except OSError:
            if not (target / MARKER).is_file():
                raise
            return result(True)  # another build finished first; use it
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result(False)
