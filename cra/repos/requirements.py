"""What a project needs to build and test, read from its files at one commit.

Sources, in order: `[build-system] requires`, PEP 621 `dependencies` and test extras,
PEP 735 `[dependency-groups]` (with `include-group`), `setup.cfg` install/extras
requirements, `requirements*.txt` (and `requirements/*.txt`) with `-r`/`-c` includes,
`tox.ini` `[testenv] deps` where they are plain requirements, and the extra
requirements the caller adds (the harness's own, `--requirement`). Lines that are not
requirements (paths, URLs, editable installs, tox substitutions) are skipped and
counted with the reason.
"""

from __future__ import annotations

import configparser
import posixpath
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from cra.errors import UsageError
from cra.git import git, git_bytes
from cra.repos.setuppy import read_setup_py

DEFAULT_EXTRAS = ("test", "tests", "testing")
DEFAULT_GROUPS = ("test", "tests", "testing", "dev")
FALLBACK_BUILD_REQUIRES = ("setuptools>=40.8.0",)
"""PEP 517's fallback for a project without `[build-system]`; cra adds it, not the project."""
FALLBACK_SOURCE = "cra (PEP 517 fallback: the project has no [build-system])"
HARNESS_SOURCE = "cra ([repos] harness_requirements)"


class GitTree:
    """The files of one commit, read with git (no checkout)."""

    def __init__(self, repo_dir: Path, sha: str) -> None:
        self.repo_dir = repo_dir
        self.sha = sha
        out = git_bytes("ls-tree", "-r", "-z", "--name-only", "--full-tree", sha, cwd=repo_dir)
        self.paths: tuple[str, ...] = tuple(
            p.decode("utf-8", "replace") for p in out.split(b"\0") if p
        )
        self._set = set(self.paths)

    def exists(self, path: str) -> bool:
        """Whether the commit has a file at `path`."""
        return path in self._set

    def read(self, path: str) -> str | None:
        """The text of `path` at the commit, or None when absent."""
        if path not in self._set:
            return None
        return git("show", f"{self.sha}:{path}", cwd=self.repo_dir)


@dataclass
class RequirementSet:
    """Requirements and constraints read from a project, with where each came from."""

    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    project_name: str | None = None
    requires_python: str | None = None
    build_requires: list[str] = field(default_factory=list)
    build_backend: str | None = None
    pyproject: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    """Requirement text -> where it was first read (a file and section, or cra)."""
    provides: set[str] = field(default_factory=set)
    """Canonical names the project itself goes by (its distribution, its top-level
    packages): a tool that depends on one of them would import the commit's code."""
    optional: set[str] = field(default_factory=set)
    """Requirements guessed from imports, dropped when the resolver cannot use them."""

    def add(self, line: str, source: str) -> None:
        """Add one requirement line if it is a valid requirement not naming the project."""
        text = line.strip()
        try:
            req = Requirement(text)
        except InvalidRequirement:
            self.skipped.append((text, f"{source}: not a requirement"))
            return
        if req.url:
            self.skipped.append((text, f"{source}: direct URL or path"))
            return
        if self.project_name and canonicalize_name(req.name) == canonicalize_name(
            self.project_name
        ):
            return
        if text not in self.requirements:
            self.requirements.append(text)
            self.origin[text] = source
        if source not in self.sources:
            self.sources.append(source)


def _load_toml(text: str | None, where: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where} is not valid TOML: {exc}") from exc


def _self_extras(req_text: str, project: str | None) -> list[str] | None:
    """The extras of `project[a,b]` when `req_text` names the project itself."""
    try:
        req = Requirement(req_text)
    except InvalidRequirement:
        return None
    if project and canonicalize_name(req.name) == canonicalize_name(project):
        return sorted(req.extras)
    return None


def _groups(data: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> list[str]:
    """The requirements of dependency group `name`, include-groups expanded."""
    groups = data.get("dependency-groups", {})
    if name in seen:
        raise UsageError(f"dependency group {name!r} includes itself through {' -> '.join(seen)}")
    out: list[str] = []
    for item in groups.get(name, []):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and "include-group" in item:
            out.extend(_groups(data, str(item["include-group"]), (*seen, name)))
    return out


def _requirements_files(tree: GitTree) -> list[str]:
    pattern = re.compile(r"^(requirements[^/]*\.txt|requirements/[^/]+\.txt)$")
    return sorted(p for p in tree.paths if pattern.match(p))


def _read_requirements_file(
    tree: GitTree, path: str, reqs: RequirementSet, seen: set[str], constraint: bool = False
) -> None:
    if path in seen:
        return
    seen.add(path)
    text = tree.read(path)
    if text is None:
        reqs.skipped.append((path, "included file is missing"))
        return
    joined = re.sub(r"\\\n", " ", text)
    for raw in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        include = re.match(r"^(-r|--requirement|-c|--constraint)\s*=?\s*(\S+)$", line)
        if include:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), include.group(2)))
            _read_requirements_file(
                tree, target, reqs, seen, constraint or include.group(1) in ("-c", "--constraint")
            )
            continue
        if line.startswith("-"):
            reqs.skipped.append((line, f"{path}: option"))
            continue
        if constraint:
            if line not in reqs.constraints:
                reqs.constraints.append(line)
            continue
        reqs.add(line, path)


def _tox_deps(tree: GitTree, reqs: RequirementSet, seen: set[str]) -> None:
    text = tree.read("tox.ini")
    if text is None:
        return
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        reqs.skipped.append(("tox.ini", f"unreadable: {exc.__class__.__name__}"))
        return
    if not parser.has_option("testenv", "deps"):
        return
    for raw in parser.get("testenv", "deps").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = line.replace("{toxinidir}/", "").replace("{toxinidir}", ".")
        include = re.match(r"^-r\s*(\S+)$", line)
        if include and "{" not in line:
            _read_requirements_file(tree, posixpath.normpath(include.group(1)), reqs, seen)
        elif "{" in line or re.match(r"^[\w.,!-]+:\s", line):
            reqs.skipped.append((line, "tox.ini: substitution or factor condition"))
        else:
            reqs.add(line, "tox.ini [testenv] deps")


def _tox_testenv(tree: GitTree) -> configparser.SectionProxy | None:
    text = tree.read("tox.ini")
    if text is None:
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return parser["testenv"] if parser.has_section("testenv") else None


def _names(value: str) -> list[str]:
    out = []
    for raw in re.split(r"[\s,]+", value):
        name = raw.strip()
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1].rsplit(":", 1)[-1]
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            out.append(name)
    return out


def tox_extras(tree: GitTree) -> list[str]:
    """The extras tox installs for `[testenv]`: `extras = tests` (or a substitution's
    default, `{env:X:tests}`), and `pip install -e .[d]` lines of its commands."""
    section = _tox_testenv(tree)
    if section is None:
        return []
    out = _names(section.get("extras", ""))
    for line in section.get("commands", "").splitlines():
        found = re.search(r"pip install\b.*?\s\.\[([A-Za-z0-9_,.-]+)\]", line)
        if found:
            out += _names(found.group(1))
    return list(dict.fromkeys(out))


def tox_groups(tree: GitTree) -> list[str]:
    """The PEP 735 groups tox installs for `[testenv]` (`dependency_groups = ...`)."""
    section = _tox_testenv(tree)
    return _names(section.get("dependency_groups", "")) if section is not None else []


def _provides(tree: GitTree, name: str | None) -> set[str]:
    """The names the project goes by: its declared name, `setup(name=...)`, and the
    top-level packages and modules of its tree (root or `src/`)."""
    names = {name} if name else set()
    setup = tree.read("setup.py") or ""
    for match in re.finditer(
        r"""(?:\bname|^NAME)\s*=\s*["']([A-Za-z0-9][A-Za-z0-9._-]*)["']""", setup, re.M
    ):
        names.add(match.group(1))
    for path in tree.paths:
        found = re.match(r"^(?:src/)?([A-Za-z_][A-Za-z0-9_]*)(?:/__init__\.py|\.py)$", path)
        if found and found.group(1) not in ("setup", "conftest", "tests", "test", "docs"):
            names.add(found.group(1))
    return {canonicalize_name(n) for n in names}


def read_requirements(
    tree: GitTree,
    *,
    extras: Iterable[str] = (),
    groups: Iterable[str] = (),
    extra_requirements: Iterable[str] = (),
    tool_requirements: Iterable[str] = (),
    strict: bool = False,
) -> RequirementSet:
    """Everything the project at `tree` needs to build and test, plus `extra_requirements`
    (the user's) and `tool_requirements` (cra's own, recorded as coming from cra).

    `extras`/`groups` are added to the default test extras and groups; with `strict`, an
    extra or group that the project does not define is a UsageError.
    """
    pyproject = _load_toml(tree.read("pyproject.toml"), "pyproject.toml")
    setup_cfg = _read_setup_cfg(tree)
    project = pyproject.get("project", {})
    name = project.get("name") or (
        setup_cfg.get("metadata", "name") if setup_cfg.has_option("metadata", "name") else None
    )
    reqs = RequirementSet(project_name=name, pyproject=pyproject)
    reqs.provides = _provides(tree, name)
    reqs.requires_python = project.get("requires-python")
    _add_build_requires(tree, pyproject, reqs)
    cfg_extras = _add_install_requires(tree, project, setup_cfg, reqs)
    _add_extras(tree, project, cfg_extras, list(extras), name, reqs, strict=strict)
    _add_groups(tree, pyproject, list(groups), reqs, strict=strict)
    seen: set[str] = set()
    for path in _requirements_files(tree):
        _read_requirements_file(tree, path, reqs, seen)
    _tox_deps(tree, reqs, seen)
    for line in extra_requirements:
        reqs.add(line, "--requirement")
    for line in tool_requirements:
        reqs.add(line, HARNESS_SOURCE)
    return reqs


def _read_setup_cfg(tree: GitTree) -> configparser.ConfigParser:
    """The commit's setup.cfg, parsed; empty when absent or unreadable."""
    setup_cfg = configparser.ConfigParser(interpolation=None, strict=False)
    cfg_text = tree.read("setup.cfg")
    if cfg_text is not None:
        try:
            setup_cfg.read_string(cfg_text)
        except configparser.Error:
            setup_cfg = configparser.ConfigParser()
    return setup_cfg


def _add_build_requires(tree: GitTree, pyproject: dict[str, Any], reqs: RequirementSet) -> None:
    """The build backend and its requirements: declared, else setuptools' fallback."""
    build = pyproject.get("build-system", {})
    if build:
        reqs.build_requires = [str(r) for r in build.get("requires", [])]
        reqs.build_backend = build.get("build-backend")
    elif tree.exists("setup.py") or tree.exists("setup.cfg"):
        reqs.build_requires = list(FALLBACK_BUILD_REQUIRES)
        reqs.build_backend = "setuptools.build_meta:__legacy__"
    build_source = "pyproject.toml [build-system] requires" if build else FALLBACK_SOURCE
    for line in reqs.build_requires:
        reqs.add(line, build_source)


def _add_install_requires(
    tree: GitTree,
    project: dict[str, Any],
    setup_cfg: configparser.ConfigParser,
    reqs: RequirementSet,
) -> dict[str, str]:
    """Add the install requirements of pyproject, setup.cfg and setup.py; return the
    extras setup.cfg and setup.py define (setup.cfg's win), as newline-joined lines."""
    for line in project.get("dependencies", []):
        reqs.add(line, "pyproject.toml [project] dependencies")
    cfg_extras = (
        dict(setup_cfg.items("options.extras_require"))
        if setup_cfg.has_section("options.extras_require")
        else {}
    )
    if setup_cfg.has_option("options", "install_requires"):
        for line in setup_cfg.get("options", "install_requires").splitlines():
            if line.strip():
                reqs.add(line, "setup.cfg install_requires")
    declared = read_setup_py(tree.read("setup.py") or "")
    for line in (*declared.install, *declared.tests):
        reqs.add(line, "setup.py install_requires/tests_require")
    for extra, lines in declared.extras.items():
        if extra not in cfg_extras:
            cfg_extras[extra] = "\n".join(lines)
    return cfg_extras


def _add_extras(
    tree: GitTree,
    project: dict[str, Any],
    cfg_extras: dict[str, str],
    extras: list[str],
    name: str | None,
    reqs: RequirementSet,
    *,
    strict: bool,
) -> None:
    """Add the default test extras, tox's and `extras`, following self-references."""
    optional = project.get("optional-dependencies", {})
    wanted = list(dict.fromkeys([*DEFAULT_EXTRAS, *tox_extras(tree), *extras]))
    if strict:
        missing = [e for e in extras if e not in optional and e not in cfg_extras]
        if missing:
            known = sorted({*optional, *cfg_extras})
            raise UsageError(
                f"the project has no extra {missing[0]!r}",
                hint=f"its extras: {', '.join(known) or 'none'}",
            )
    done: set[str] = set()
    while wanted:
        extra = wanted.pop(0)
        if extra in done:
            continue
        done.add(extra)
        wanted_lines = list(optional.get(extra, []))
        if extra in cfg_extras:
            wanted_lines += [x for x in cfg_extras[extra].splitlines() if x.strip()]
        for line in wanted_lines:
            nested = _self_extras(line, name)
            if nested is not None:
                wanted.extend(nested)
                continue
            reqs.add(line, f"extra [{extra}]")


def _add_groups(
    tree: GitTree,
    pyproject: dict[str, Any],
    groups: list[str],
    reqs: RequirementSet,
    *,
    strict: bool,
) -> None:
    """Add the default test dependency groups, tox's and `groups` that the project defines."""
    defined = pyproject.get("dependency-groups", {})
    if strict:
        missing = [g for g in groups if g not in defined]
        if missing:
            raise UsageError(
                f"the project has no dependency group {missing[0]!r}",
                hint=f"its groups: {', '.join(sorted(defined)) or 'none'}",
            )
    for group in dict.fromkeys([*DEFAULT_GROUPS, *tox_groups(tree), *groups]):
        if group in defined:
            for line in _groups(pyproject, group):
                reqs.add(line, f"dependency group [{group}]")
