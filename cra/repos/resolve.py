"""Pinning an era's requirements with `uv pip compile`, and what to do when that fails.

Two kinds of requirement meet in every environment:

- the project's own (its `pyproject.toml`, `setup.cfg`, requirements files, tox deps),
  resolved as of the era's end (`--exclude-newer`), so old commits get the dependencies
  they were written against;
- cra's own tools (`[repos] harness_requirements`: pytest, pytest-timeout; and the PEP 517
  fallback `setuptools>=40.8.0` for projects without `[build-system]`), which must run on
  the target interpreter. A pytest of 2016 does not run on Python 3.11, and a setuptools
  of 2016 cannot satisfy the fallback at all. These, with their own dependencies, are
  bounded by the later of the era's end and the interpreter's *tools date* (its release
  plus :data:`TOOLS_GRACE`), through uv's per-package `--exclude-newer-package`.

An era that still cannot be resolved, or whose pins cannot be fetched as wheels, is
retried with the next later bound (its neighbour's end, then the next, and finally no
bound); each attempt is recorded. Only when every attempt fails is the era unusable.

uv resolves with `--no-build`: it never runs an sdist's `setup.py` or backend on the host
to learn its metadata. A package it finds only as an sdist is built into a wheel in the
sandbox first (`cra.repos.sdist`: the newest sdist within the package's bound and the
requirements' specifiers), and the resolution is run again with that wheel in reach.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from cra.errors import CraError
from cra.repos.requirements import RequirementSet
from cra.repos.sdist import SdistBuilder
from cra.repos.wheels import parse_pin
from cra.tools import ToolError, run_tool, tool_env, uv_binary

PYTHON_RELEASED: dict[str, str] = {
    "3.8": "2019-10-14",
    "3.9": "2020-10-05",
    "3.10": "2021-10-04",
    "3.11": "2022-10-24",
    "3.12": "2023-10-02",
    "3.13": "2024-10-07",
    "3.14": "2025-10-07",
}
"""Release dates of each CPython X.Y.0: tools older than this never saw the interpreter."""

TOOLS_GRACE = timedelta(days=120)
"""How long after an interpreter's release its tools are taken to support it."""

MAX_ATTEMPTS = 6
BUILD_TOOLS = ("setuptools", "wheel")
"""Always bounded like cra's tools: uv builds an sdist's metadata with them while
resolving, and a setuptools of the era cannot satisfy today's PEP 517 fallback."""
SHADOW_STEP = timedelta(days=91)
"""How far cra's tools' bound moves on while they depend on the project under test."""


def tools_date(python: str) -> datetime | None:
    """The earliest upload date cra's own tools are bounded to for Python `python`."""
    released = PYTHON_RELEASED.get(python)
    if released is None:
        return None
    return datetime.fromisoformat(released).replace(tzinfo=UTC) + TOOLS_GRACE


def stamp(moment: datetime) -> str:
    """`moment` as uv's RFC 3339 timestamp."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def later_bounds(
    own: datetime | None, later: list[datetime], now: datetime
) -> list[tuple[datetime | None, str]]:
    """The bounds to try for an era, in order: its own, each later era's, then none."""
    bounds: list[tuple[datetime | None, str]] = [(own, "the era's end")]
    if own is None:
        return bounds
    for moment in later:
        if moment > own and moment < now and len(bounds) < MAX_ATTEMPTS - 1:
            bounds.append((moment, f"a later era's end, {moment.date().isoformat()}"))
    bounds.append((None, "no bound: the present"))
    return bounds


class Resolver:
    """Runs `uv pip compile` for one pack: shared interpreter, index and cache."""

    def __init__(
        self,
        *,
        python: str,
        workdir: Path,
        find_links: Path | None,
        use_index: bool,
        uv_cache: Path,
        own_tools: tuple[str, ...],
        builder: SdistBuilder | None = None,
    ) -> None:
        uv = uv_binary()
        if uv is None:
            raise CraError("uv is not installed", hint="install cra's dependencies (uv is one)")
        self.uv = uv
        self.python = python
        self.workdir = workdir
        self.find_links = find_links
        self.use_index = use_index
        self.uv_cache = uv_cache
        self.own_tools = own_tools
        self.builder = builder
        self._tool_pins: dict[str, dict[str, str]] = {}

    def tools_bound(self, era_bound: datetime | None) -> datetime | None:
        """The bound of cra's own tools for an era bounded at `era_bound`."""
        floor = tools_date(self.python)
        if era_bound is None or floor is None:
            return None
        return max(era_bound, floor)

    def unshadowed(
        self, tools: tuple[str, ...], bound: datetime | None, provides: set[str]
    ) -> datetime | None:
        """The earliest bound, from `bound` on, under which none of cra's tools depends on
        a package the project itself provides (pytest 7.2 needs attrs; testing attrs, it
        would import the commit's attrs and fail)."""
        now = datetime.now(UTC)
        while bound is not None and provides & set(self.tool_names(tools, bound)):
            bound = bound + SHADOW_STEP
            if bound >= now:
                return None
        return bound

    def tool_pins(self, tools: tuple[str, ...], bound: datetime | None) -> dict[str, str]:
        """cra's tools and every package they pull in, resolved alone under `bound`:
        canonical name -> version."""
        key = f"{stamp(bound) if bound else 'none'} {' '.join(tools)}"
        if key not in self._tool_pins:
            pins = self.compile(list(tools), [], self.workdir / "tools", bound, {})
            self._tool_pins[key] = {
                canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins
            }
        return self._tool_pins[key]

    def tool_names(self, tools: tuple[str, ...], bound: datetime | None) -> tuple[str, ...]:
        """cra's tools and every package they pull in, resolved alone under `bound`."""
        return tuple(sorted(self.tool_pins(tools, bound)))

    def too_old(self, pins: list[str]) -> list[str]:
        """Overrides for cra's own tools that a project's specifier pinned older than the
        interpreter's tools date allows (`pytest<6` on Python 3.11): `name>=version`."""
        floor = tools_date(self.python)
        if floor is None or not self.use_index or not self.own_tools:
            return []
        least = self.tool_pins(self.own_tools, floor)
        wanted = {canonicalize_name(Requirement(t).name) for t in self.own_tools}
        out = []
        for pin in pins:
            name, version = canonicalize_name(pin.split("==")[0]), pin.split("==")[1]
            if name in wanted and name in least and Version(version) < Version(least[name]):
                out.append(f"{name}>={least[name]}")
        return out

    def pin(
        self,
        reqs: RequirementSet,
        era_bound: datetime | None,
        where: Path,
        later: dict[str, datetime | None] | None = None,
    ) -> list[str]:
        """Pin `reqs`: the project's requirements under `era_bound` (the packages in
        `later` under their own, later bound), cra's own tools (and what they pull in)
        under the interpreter's tools bound."""
        mine = [r for r in reqs.requirements if reqs.origin.get(r, "").startswith("cra")]
        tools = tuple(dict.fromkeys([*self.own_tools, *mine]))
        per_package: dict[str, str] = {}
        bound = era_bound if self.use_index else None
        tool_bound = self.unshadowed(tools, self.tools_bound(bound), reqs.provides)
        if bound is not None and tool_bound != bound:
            names = {*BUILD_TOOLS, *(self.tool_names(tools, tool_bound) if tools else ())}
            for name in sorted(names):
                per_package[name] = stamp(tool_bound) if tool_bound else "false"
        for name, moment in (later or {}).items():
            if bound is not None:
                per_package[name] = _later(per_package.get(name), moment)
        wanted = list(reqs.requirements)
        while True:
            try:
                pins = self.compile(wanted, reqs.constraints, where, bound, per_package)
                overrides = self.too_old(pins)
                if not overrides:
                    return pins
                return self.compile(wanted, reqs.constraints, where, bound, per_package, overrides)
            except ResolveError as exc:
                guesses = blamed(str(exc), [r for r in wanted if r in reqs.optional])
                if not guesses:
                    raise
                wanted = [r for r in wanted if r not in guesses]

    def compile(
        self,
        requirements: list[str],
        constraints: list[str],
        where: Path,
        bound: datetime | None,
        per_package: dict[str, str],
        overrides: list[str] | None = None,
    ) -> list[str]:
        """`uv pip compile` of `requirements`; `name==version` lines, or ResolveError.
        `overrides` replace whatever the requirements say of those packages. A package
        found only as an sdist is built in the sandbox, then the resolution runs again."""
        tried: set[str] = set()
        while True:
            try:
                return self._compile(
                    requirements, constraints, where, bound, per_package, overrides
                )
            except ResolveError as exc:
                wanted = needs_build(str(exc))
                if self.builder is None or not wanted:
                    raise
                new = self._build_sdists(
                    wanted, [*requirements, *constraints], bound, per_package, tried
                )
                if not new:
                    raise

    def _build_sdists(
        self,
        names: set[str],
        requirements: list[str],
        bound: datetime | None,
        per_package: dict[str, str],
        tried: set[str],
    ) -> list[str]:
        """Build, in the sandbox, the newest sdist of each of `names` not yet tried that its
        bound and the requirements allow; the pins built."""
        if self.builder is None:
            return []
        built = []
        for name in sorted(names):
            own = per_package.get(name)
            moment = None if own == "false" else (parse_stamp(own) if own else bound)
            sdist = self.builder.choose(name, moment, specifier_of(name, requirements))
            if sdist is None or sdist.pin in tried:
                continue
            tried.add(sdist.pin)
            self.builder.build(sdist)
            built.append(sdist.pin)
        return built

    def _compile(
        self,
        requirements: list[str],
        constraints: list[str],
        where: Path,
        bound: datetime | None,
        per_package: dict[str, str],
        overrides: list[str] | None,
    ) -> list[str]:
        """One `uv pip compile --no-build` run."""
        where.mkdir(parents=True, exist_ok=True)
        infile = where / "requirements.in"
        infile.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        argv = [str(self.uv), "pip", "compile", str(infile), "--python-version", self.python]
        argv += ["--no-header", "--no-annotate", "--quiet", "--no-build"]
        if self.builder is not None:
            argv += ["--find-links", str(self.builder.out_dir)]
        if overrides:
            ofile = where / "overrides.txt"
            ofile.write_text("\n".join(overrides) + "\n", encoding="utf-8")
            argv += ["--override", str(ofile)]
        if constraints:
            cfile = where / "constraints.txt"
            cfile.write_text("\n".join(constraints) + "\n", encoding="utf-8")
            argv += ["--constraint", str(cfile)]
        if self.find_links is not None:
            argv += ["--find-links", str(self.find_links)]
        if not self.use_index:
            argv.append("--no-index")
        if bound is not None:
            argv += ["--exclude-newer", stamp(bound)]
        for name, value in sorted(per_package.items()):
            argv += ["--exclude-newer-package", f"{name}={value}"]
        try:
            out = run_tool(argv, what="resolving", env=tool_env(self.uv_cache), cwd=where)
        except ToolError as exc:
            raise ResolveError(resolver_message(exc.output)) from None
        pins = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
        for pin in pins:
            if parse_pin(pin) is None:
                raise ResolveError(
                    f"resolution gave {pin!r}, which is not a name==version pin",
                    hint="a direct URL or path requirement cannot be packed; drop it",
                )
        return pins


NEEDS_BUILD = (
    re.compile(r"Wheels are required for `([^`]+)` because building from source is disabled"),
    re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:[=<>!~]=?[^\s,]+)? has no usable wheels"),
    re.compile(r"all versions of ([A-Za-z0-9][A-Za-z0-9._-]*) have no usable wheels"),
)


def needs_build(message: str) -> set[str]:
    """The packages a `--no-build` resolution found only as sdists (canonical names)."""
    return {canonicalize_name(m) for rx in NEEDS_BUILD for m in rx.findall(message)}


def specifier_of(name: str, requirements: list[str]) -> SpecifierSet:
    """What `requirements` allow of package `name` (every specifier naming it, joined)."""
    spec = SpecifierSet()
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == name:
            spec &= req.specifier
    return spec


def parse_stamp(text: str) -> datetime:
    """A timestamp written by :func:`stamp`, back as a datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def requirement_names(reqs: RequirementSet) -> list[str]:
    """The distribution names `reqs` asks for."""
    names = []
    for text in reqs.requirements:
        try:
            names.append(Requirement(text).name)
        except InvalidRequirement:
            continue
    return names


def blamed(message: str, candidates: list[str]) -> list[str]:
    """The requirements among `candidates` whose name a resolver message mentions (as a
    whole word)."""
    lowered = message.lower().replace("_", "-")
    out = []
    for text in candidates:
        name = canonicalize_name(Requirement(text).name)
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", lowered):
            out.append(text)
    return out


def _later(current: str | None, moment: datetime | None) -> str:
    """The later of a per-package bound already set and `moment` (None: unbounded)."""
    if moment is None or current == "false":
        return "false"
    return max(current or "", stamp(moment))


class ResolveError(CraError):
    """An era's requirements could not be pinned; carries the resolver's message."""


def resolver_message(output: str) -> str:
    """The resolver's whole message on one line (its tree drawing stripped)."""
    lines = [line.strip(" ×╰─▶│├") for line in output.splitlines()]
    return " ".join(line for line in lines if line) or "no output"


def provenance(reqs: RequirementSet, texts: list[str]) -> str:
    """Where each of the requirements `texts` came from, as `requirement (from source)`."""
    return "; ".join(f"{text} (from {reqs.origin.get(text, 'unknown')})" for text in texts)
