"""Dependencies that exist only as sdists: fetched without running them, built in the sandbox.

An sdist's `setup.py` or build backend is code of whoever published it, so at pack time it
never runs on the host. The host only does what runs no code of the sdist: it copies the
sdist from `--find-links` or downloads it from the index (the simple JSON API, its sha256
checked), unpacks it as data, reads its `[build-system] requires` (setuptools and wheel
for a legacy `setup.py`), and installs those as wheels only (`uv pip install --no-build`)
into a build environment. The build itself (`build_wheel` of the backend, through
`cra/project_build/cra_build_project.py` in `wheel` mode) runs in the sandbox: no network,
only the tree, the output folder, a temp dir and HOME writable, as the sandbox uid when
cra is root, under `[validate]`'s memory and process limits. The one `.whl` it leaves is
checked (a regular file whose name matches the sdist) and moved into `out_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from cra.config import ValidateSettings
from cra.errors import CraError
from cra.sandbox import Limits, choose_isolation, prepare_owned, run_sandboxed, sandbox_uid
from cra.tools import ToolError, run_tool, tool_env, uv_binary

BUILD_SCRIPT_DIR = Path(__file__).resolve().parents[1] / "project_build"
"""Holds the script the sandboxed build runs; the sandbox shows it read-only."""
BUILD_SCRIPT = BUILD_SCRIPT_DIR / "cra_build_project.py"
LEGACY_REQUIRES = ("setuptools>=40.8.0",)
BUILD_WALL_S = 900.0
DEFAULT_INDEX = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SDIST_NAME = re.compile(r"^(.+)-([^-]+)\.(tar\.gz|zip)$")
Echo = Callable[[str], None]


class FetchError(CraError):
    """A pin could not be had as a wheel (no wheel, or its sdist failed to build)."""


@dataclass(frozen=True)
class SdistFile:
    """One sdist of a package: a local path or an index URL with its sha256."""

    filename: str
    name: str
    version: Version
    where: str
    sha256: str | None = None
    uploaded: datetime | None = None

    @property
    def pin(self) -> str:
        """`name==version`."""
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class BuildSandbox:
    """How sdist builds are sandboxed: the configured uid, whether running with no
    sandbox is allowed, and the limits of one build."""

    configured_uid: int
    allow_unsafe: bool
    limits: Limits

    @classmethod
    def from_settings(cls, validate: ValidateSettings, *, allow_unsafe: bool) -> BuildSandbox:
        """The sandbox of `[validate]`: its uid, memory and process limits."""
        wall = max(BUILD_WALL_S, validate.run_timeout_s)
        limits = Limits(
            wall_s=wall,
            memory_mb=validate.memory_mb,
            max_processes=validate.max_processes,
            cpu_s=int(wall) + 1,
        )
        return cls(validate.sandbox_uid, allow_unsafe, limits)


def sdist_of(filename: str) -> tuple[str, Version] | None:
    """(canonical name, version) of an sdist file name, None for anything else."""
    match = SDIST_NAME.match(filename)
    if not match:
        return None
    try:
        return canonicalize_name(match.group(1)), Version(match.group(2))
    except InvalidVersion:
        return None


def index_url() -> str:
    """The simple index uv and pip use: `UV_INDEX_URL`, `PIP_INDEX_URL`, else PyPI."""
    for var in ("UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(var):
            return os.environ[var].rstrip("/")
    return DEFAULT_INDEX


def index_sdists(name: str) -> list[SdistFile]:
    """The sdists the index lists for `name` (yanked ones left out)."""
    url = f"{index_url()}/{canonicalize_name(name)}/"
    request = urllib.request.Request(url, headers={"Accept": SIMPLE_JSON})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            listing = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise FetchError(f"listing the files of {name} on {url} failed: {exc}") from None
    out = []
    for entry in listing.get("files", []):
        parsed = sdist_of(str(entry.get("filename", "")))
        if parsed is None or entry.get("yanked"):
            continue
        uploaded = entry.get("upload-time")
        when = datetime.fromisoformat(uploaded.replace("Z", "+00:00")) if uploaded else None
        sha = entry.get("hashes", {}).get("sha256")
        out.append(SdistFile(entry["filename"], parsed[0], parsed[1], entry["url"], sha, when))
    return out


def unpack(sdist: Path, dest: Path) -> Path:
    """Unpack `sdist` into `dest` as data (no link, device or path outside `dest`); the
    project's top folder."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            for member in archive.namelist():
                target = (dest / member).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise FetchError(f"the sdist {sdist.name} holds a path outside it: {member}")
            archive.extractall(dest)  # noqa: S202 - every member checked above
    else:
        with tarfile.open(sdist) as archive:
            try:
                archive.extractall(dest, filter="data")
            except tarfile.TarError as exc:
                raise FetchError(f"the sdist {sdist.name} cannot be unpacked: {exc}") from None
    tops = [p for p in dest.iterdir() if p.is_dir() and not p.is_symlink()]
    if len(tops) != 1:
        raise FetchError(f"the sdist {sdist.name} has no single top folder")
    return tops[0]


def build_requires(tree: Path) -> list[str]:
    """What building `tree` needs: its `[build-system] requires`, else setuptools (whose
    releases since 70.1 build wheels themselves); wheel too when the requirements bound
    setuptools, as an older one asks for it."""
    path = tree / "pyproject.toml"
    requires: list[str] = list(LEGACY_REQUIRES)
    if path.is_file() and not path.is_symlink():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("build-system", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FetchError(f"the sdist's pyproject.toml cannot be read: {exc}") from None
        if "requires" in table:
            requires = [str(r) for r in table["requires"]]
    bounded: dict[str, str] = {
        canonicalize_name(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]): r for r in requires
    }
    if "wheel" not in bounded and re.search(r"<|==|~=", bounded.get("setuptools", "")):
        requires.append("wheel")
    return requires


class SdistBuilder:
    """Builds dependencies' sdists into wheels in `out_dir`, each in the sandbox."""

    def __init__(
        self,
        out_dir: Path,
        *,
        python: str,
        find_links: Path | None,
        use_index: bool,
        uv_cache: Path,
        sandbox: BuildSandbox,
        say: Echo | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.python = python
        self.find_links = find_links
        self.use_index = use_index
        self.uv_cache = uv_cache
        self.sandbox = sandbox
        self.say = say or (lambda _msg: None)
        self.built = 0
        self._isolation: tuple[str, int | None] | None = None
        self._listed: dict[str, list[SdistFile]] = {}
        out_dir.mkdir(parents=True, exist_ok=True)

    def isolation(self) -> tuple[str, int | None]:
        """The isolation builds get and the uid they run as (chosen at the first build);
        SandboxUnavailable, with its install hint, when none works and none was allowed."""
        if self._isolation is None:
            uid = sandbox_uid(self.sandbox.configured_uid)
            chosen = choose_isolation(allow_unsafe=self.sandbox.allow_unsafe, uid=uid)
            self._isolation = (chosen, uid if chosen != "none" else None)
        return self._isolation

    def sdists(self, name: str) -> list[SdistFile]:
        """Every sdist of `name` in --find-links, and on the index when it is used."""
        key = canonicalize_name(name)
        if key not in self._listed:
            found = []
            if self.find_links is not None:
                for path in sorted(self.find_links.iterdir()):
                    parsed = sdist_of(path.name)
                    if parsed is not None and parsed[0] == key:
                        found.append(SdistFile(path.name, key, parsed[1], str(path)))
            if self.use_index:
                found += index_sdists(key)
            self._listed[key] = found
        return self._listed[key]

    def choose(
        self, name: str, bound: datetime | None, spec: SpecifierSet | None = None
    ) -> SdistFile | None:
        """The newest sdist of `name` within `spec`, uploaded before `bound` (local files
        carry no upload date and are always in)."""
        fits = [
            s
            for s in self.sdists(name)
            if (spec is None or spec.contains(s.version, prereleases=True))
            and (bound is None or s.uploaded is None or s.uploaded <= bound)
        ]
        return max(fits, key=lambda s: (s.version, s.uploaded is None), default=None)

    def wheel_for(self, sdist: SdistFile) -> str | None:
        """A wheel already built from `sdist` in `out_dir`."""
        for path in self.out_dir.iterdir():
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            if name == sdist.name and version == sdist.version:
                return path.name
        return None

    def build(self, sdist: SdistFile) -> str:
        """The file name in `out_dir` of a wheel built from `sdist` in the sandbox."""
        have = self.wheel_for(sdist)
        if have is not None:
            return have
        isolation, uid = self.isolation()
        self.say(f"  building {sdist.filename} in the sandbox ({isolation})")
        with tempfile.TemporaryDirectory(prefix="cra-sdist-") as scratch:
            work = Path(scratch)
            os.chmod(work, 0o755)  # noqa: S103 - the sandbox uid reaches the folders below
            local = self.fetch(sdist, work)
            tree = unpack(local, work / "src")
            venv = self.build_env(tree, work / "venv", sdist)
            out = work / "out"
            out.mkdir()
            self.run(tree, venv, out, work, sdist, isolation, uid)
            wheel = self.take(out, sdist)
        self.built += 1
        return wheel

    def fetch(self, sdist: SdistFile, work: Path) -> Path:
        """`sdist` as a file in `work`: copied from --find-links, or downloaded and its
        sha256 checked against the index's."""
        target = work / sdist.filename
        if not sdist.where.startswith(("http://", "https://")):
            shutil.copyfile(sdist.where, target)
            return target
        digest = hashlib.sha256()
        try:
            with (
                urllib.request.urlopen(sdist.where, timeout=300) as response,  # noqa: S310
                target.open("wb") as fh,
            ):
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    fh.write(chunk)
        except OSError as exc:
            raise FetchError(f"downloading the sdist {sdist.filename} failed: {exc}") from None
        if sdist.sha256 is None or digest.hexdigest() != sdist.sha256:
            raise FetchError(
                f"the sdist {sdist.filename} does not match the index's sha256 "
                f"({sdist.sha256}, got {digest.hexdigest()})",
                hint="try again; if it persists, the index or a proxy serves a changed file",
            )
        return target

    def build_env(self, tree: Path, venv: Path, sdist: SdistFile) -> Path:
        """A virtualenv holding the build requirements of `tree`, from wheels only."""
        uv = uv_binary()
        if uv is None:
            raise CraError("uv is not installed", hint="install cra's dependencies (uv is one)")
        env = tool_env(self.uv_cache)
        requires = build_requires(tree)
        what = f"making the build environment of {sdist.pin}"
        run_tool(
            [str(uv), "venv", "--quiet", "--python", self.python, str(venv)], what=what, env=env
        )
        argv = [str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
        argv += ["--no-build", "--find-links", str(self.out_dir)]
        if self.find_links is not None:
            argv += ["--find-links", str(self.find_links)]
        if not self.use_index:
            argv.append("--no-index")
        try:
            run_tool([*argv, *requires], what="installing build requirements", env=env)
        except ToolError as exc:
            raise FetchError(
                f"building a wheel from the sdist {sdist.filename} (for {sdist.pin}) failed: "
                f"its build requirements {', '.join(requires)} are not all to be had as "
                f"wheels: {build_failure(exc.output)}",
                hint="add wheels of them to --find-links, or allow the index with --index",
            ) from None
        return venv

    def run(
        self,
        tree: Path,
        venv: Path,
        out: Path,
        work: Path,
        sdist: SdistFile,
        isolation: str,
        uid: int | None,
    ) -> None:
        """Run the backend's `build_wheel` of `tree` into `out` in the sandbox."""
        tmp, home = work / "tmp", work / "home"
        tmp.mkdir()
        home.mkdir()
        writable = [tree, out, tmp, home]
        prepare_owned(writable, uid)
        interpreter = Path(os.path.realpath(venv / "bin" / "python")).parents[1]
        python = venv / "bin" / "python"
        env = {
            "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        ran = run_sandboxed(
            [str(python), "-I", str(BUILD_SCRIPT), str(tree), str(out), "wheel"],
            isolation=isolation,
            cwd=tree,
            writable=writable,
            readonly=[venv, interpreter, BUILD_SCRIPT_DIR],
            env=env,
            limits=self.sandbox.limits,
            logs=work / "logs",
            uid=uid,
        )
        if ran.start_error or ran.timed_out or ran.returncode != 0:
            why = ran.start_error or ("timed out" if ran.timed_out else f"exit {ran.returncode}")
            output = f"{ran.stdout_tail}\n{ran.stderr_tail}"
            raise FetchError(
                f"building a wheel from the sdist {sdist.filename} (for {sdist.pin}) failed "
                f"in the sandbox ({why}): {build_failure(output)}",
                hint="the era is retried with a later bound; pin a version that has a "
                "wheel for this Python with --requirement",
            )

    def take(self, out: Path, sdist: SdistFile) -> str:
        """Move the wheel the build left in `out` into `out_dir`, after checking it is one
        regular file whose name is a wheel of `sdist`'s name and version."""
        for path in sorted(out.iterdir()):
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            if name == sdist.name and version == sdist.version:
                tmp = self.out_dir / f".{path.name}.tmp"
                shutil.copyfile(path, tmp)
                tmp.replace(self.out_dir / path.name)
                return path.name
        raise FetchError(
            f"building a wheel from the sdist {sdist.filename} (for {sdist.pin}) left no "
            f"wheel of {sdist.pin}",
            hint="the era is retried with a later bound; pin a version that has a wheel",
        )


def build_failure(output: str, keep: int = 12) -> str:
    """The lines of a failed build that say why: errors first, else its last lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    telling = [ln for ln in lines if re.search(r"error|Error|failed|No module", ln)]
    chosen = (telling or lines)[-keep:]
    return " | ".join(chosen) if chosen else "no output"
