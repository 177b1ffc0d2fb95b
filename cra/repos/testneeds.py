"""What an era's test configuration needs beyond what the project lists.

A project's pytest configuration can name plugins its requirements never mention (they
lived in a CI file or a developer's machine): an ini option such as `asyncio_mode`, an
`addopts` flag such as `--cov`, a `-p` plugin, `required_plugins`, or a third-party import
in `conftest.py`. Without them pytest stops before running a single test ("Unknown config
option", "unrecognized arguments"), so every commit of the era looks broken. This module
reads the configuration forms pytest itself reads (`pytest.ini`, `pyproject.toml
[tool.pytest.ini_options]`, `tox.ini [pytest]`, `setup.cfg [tool:pytest]`, `conftest.py`)
and says which distributions they need, and why.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import sys
import tomllib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from cra.git import git
from cra.repos.requirements import GitTree

if TYPE_CHECKING:
    from cra.repos.eras import Era

INI_PLUGINS: dict[str, str] = {
    "asyncio_mode": "pytest-asyncio",
    "asyncio_default_fixture_loop_scope": "pytest-asyncio",
    "timeout": "pytest-timeout",
    "timeout_method": "pytest-timeout",
    "django_settings_module": "pytest-django",
    "env": "pytest-env",
    "mock_use_standalone_module": "pytest-mock",
    "flake8-ignore": "pytest-flake8",
    "flake8-max-line-length": "pytest-flake8",
    "trio_mode": "pytest-trio",
    "qt_api": "pytest-qt",
    "doctest_plus": "pytest-doctestplus",
    "mpl-baseline-path": "pytest-mpl",
}
"""ini options (lower case) that only a plugin defines, and the plugin."""

FLAG_PLUGINS: dict[str, str] = {
    "--cov": "pytest-cov",
    "--no-cov": "pytest-cov",
    "--cov-report": "pytest-cov",
    "--cov-config": "pytest-cov",
    "--numprocesses": "pytest-xdist",
    "-n": "pytest-xdist",
    "--dist": "pytest-xdist",
    "--benchmark-disable": "pytest-benchmark",
    "--benchmark-skip": "pytest-benchmark",
    "--reruns": "pytest-rerunfailures",
    "--doctest-plus": "pytest-doctestplus",
    "--mypy": "pytest-mypy",
    "--flake8": "pytest-flake8",
    "--html": "pytest-html",
    "--timeout": "pytest-timeout",
    "--hypothesis-show-statistics": "hypothesis",
}
"""`addopts` flags that only a plugin defines, and the plugin."""

P_PLUGINS: dict[str, str] = {
    "xdist": "pytest-xdist",
    "pytest_cov": "pytest-cov",
    "pytest_asyncio": "pytest-asyncio",
    "pytest_mock": "pytest-mock",
    "anyio": "anyio",
    "trio": "pytest-trio",
}
"""`-p NAME` and `pytest_plugins` module names, and their distribution."""

PYTEST_BUILTINS = frozenset(
    "pytester doctest capture monkeypatch tmpdir logging warnings junitxml cacheprovider "
    "faulthandler unittest skipping terminal stepwise recwarn setuponly setupplan".split()
)
"""Plugins that ship inside pytest (`-p pytester`), needing no distribution."""

IMPORT_DISTS: dict[str, str] = {
    "yaml": "pyyaml",
    "attr": "attrs",
    "dateutil": "python-dateutil",
    "zope": "zope-interface",
    "pkg_resources": "setuptools",
    "_pytest": "pytest",
}
"""Import names whose distribution is called otherwise."""


@dataclass(frozen=True)
class Need:
    """A distribution the tests need, why, and whether a resolver may drop it when the
    index does not know the name (a guess from an import is optional)."""

    requirement: str
    reason: str
    optional: bool = False


INI_FILES = (("pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest"))


def _ini_sections(tree: GitTree) -> list[tuple[str, dict[str, str]]]:
    """Every pytest ini section at the commit, as (file, options)."""
    found: list[tuple[str, dict[str, str]]] = []
    for path, section in INI_FILES:
        text = tree.read(path)
        if not text:
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            continue
        if parser.has_section(section):
            found.append((path, {k.lower(): v for k, v in parser.items(section)}))
    text = tree.read("pyproject.toml")
    if text:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        options = data.get("tool", {}).get("pytest", {}).get("ini_options", {})
        if isinstance(options, dict):
            found.append(("pyproject.toml", {str(k).lower(): _flat(v) for k, v in options.items()}))
    return found


def _flat(value: object) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _flags(addopts: str) -> list[str]:
    try:
        return shlex.split(addopts)
    except ValueError:
        return addopts.split()


def _from_ini(path: str, options: dict[str, str]) -> list[Need]:
    needs = [
        Need(plugin, f"{path} sets {key}") for key, plugin in INI_PLUGINS.items() if key in options
    ]
    words = _flags(options.get("addopts", ""))
    for i, word in enumerate(words):
        flag = word.split("=", 1)[0]
        if flag in FLAG_PLUGINS:
            needs.append(Need(FLAG_PLUGINS[flag], f"{path} addopts uses {flag}"))
        if flag == "-p" and i + 1 < len(words) and words[i + 1] in P_PLUGINS:  # else builtin
            needs.append(Need(P_PLUGINS[words[i + 1]], f"{path} addopts loads -p {words[i + 1]}"))
    for name in options.get("required_plugins", "").split():
        dist = re.split(r"[<>=!~ ]", name, maxsplit=1)[0]
        if dist:
            needs.append(Need(dist, f"{path} lists it in required_plugins"))
    return needs


def _conftests(tree: GitTree) -> list[str]:
    return [p for p in tree.paths if p.rsplit("/", 1)[-1] == "conftest.py" and p.count("/") <= 2]


def _imports(source: str) -> tuple[set[str], set[str]]:
    """Top-level imported modules and `pytest_plugins` entries of a conftest."""
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError):
        return set(), set()
    imported: set[str] = set()
    plugins: set[str] = set()
    for node in module.body:
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets
        ):
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    plugins.add(const.value.split(".")[0])
    return imported, plugins


def _local_modules(tree: GitTree) -> set[str]:
    """Names importable from the tree itself (top-level and src/ packages and modules)."""
    names = set()
    for path in tree.paths:
        parts = path.split("/")
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        names.add(parts[0].removesuffix(".py"))
        if len(parts) > 1:
            names.add(parts[1].removesuffix(".py"))
    return names


def _from_conftest(tree: GitTree, path: str, local: set[str]) -> list[Need]:
    imported, plugins = _imports(tree.read(path) or "")
    needs = []
    for name in sorted(plugins - local - PYTEST_BUILTINS):
        dist = P_PLUGINS.get(name, name.replace("_", "-"))
        needs.append(Need(dist, f"{path} sets pytest_plugins {name}", True))
    for name in sorted(imported - local - set(sys.stdlib_module_names) - {"__future__"}):
        needs.append(Need(IMPORT_DISTS.get(name, name), f"{path} imports {name}", True))
    return needs


def config_needs(tree: GitTree, known: AbstractSet[str]) -> list[Need]:
    """Distributions the commit's test configuration needs that are not in `known`
    (canonical names of the requirements already read), each with its reason."""
    needs: list[Need] = []
    for path, options in _ini_sections(tree):
        needs += _from_ini(path, options)
    local = _local_modules(tree)
    for path in _conftests(tree):
        needs += _from_conftest(tree, path, local)
    out: dict[str, Need] = {}
    for need in needs:
        name = canonicalize_name(need.requirement)
        if name not in known and name not in out:
            out[name] = need
    return list(out.values())


CONFIG_FILES = ("pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "conftest.py")
MAX_CONFIG_TREES = 12


def era_config_trees(repo_dir: Path, era: Era) -> list[GitTree]:
    """The commits of `era` that changed a test configuration file, newest first (at most
    :data:`MAX_CONFIG_TREES`): what the era's commits need can differ from its last one."""
    out = git(
        "log",
        "--format=%H",
        f"--since={era.start.isoformat()}",
        f"--until={era.until.isoformat()}",
        era.last_sha,
        "--",
        *CONFIG_FILES,
        *(f"*/{name}" for name in ("conftest.py", "pytest.ini")),
        cwd=repo_dir,
    )
    shas = [line for line in out.split() if line and line != era.last_sha]
    return [GitTree(repo_dir, sha) for sha in shas[:MAX_CONFIG_TREES]]
