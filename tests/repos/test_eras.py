"""Every era gets an environment or a reason: bounds, retries, provenance, test needs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cra.errors import CraError
from cra.fixtures.wheelhouse import make_wheel
from cra.repos.eras import Bounds, failed_builds, split_eras
from cra.repos.manifest import load_manifest
from cra.repos.pack import PackOptions, pack
from cra.repos.requirements import FALLBACK_SOURCE, GitTree, read_requirements
from cra.repos.resolve import later_bounds, tools_date
from cra.repos.testneeds import config_needs, era_config_trees
from cra.workspace import Workspace
from tests.repos.helpers import git, make_repo

TESTS = {"tests/test_a.py": "def test_a():\n    pass\n", "a/__init__.py": ""}


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_an_era_tries_its_own_end_then_later_eras_then_no_bound() -> None:
    """The ladder of bounds: the era's end first, each later era's end, then none."""
    own, later, now = (
        _day("2017-01-01"),
        [_day("2018-01-01"), _day("2019-01-01")],
        _day("2020-06-01"),
    )
    bounds = [b for b, _ in later_bounds(own, later, now)]
    assert bounds == [own, *later, None]
    assert [b for b, _ in later_bounds(None, later, now)] == [None]


def test_a_failed_build_moves_only_that_package_then_the_era() -> None:
    """A package whose sdist fails is moved to the interpreter's tools date, then
    unbounded; only then does the whole era's bound move on."""
    steps = later_bounds(_day("2016-01-01"), [_day("2017-01-01")], _day("2026-01-01"))
    floor = tools_date("3.11")
    bounds = Bounds(steps, floor)
    assert bounds.relax({"zope-interface"})
    assert bounds.per_package() == {"zope-interface": floor}
    assert bounds.bound == _day("2016-01-01")
    assert bounds.relax({"zope-interface"})
    assert bounds.per_package() == {"zope-interface": None}
    assert bounds.relax({"zope-interface"})  # nothing left for it: the era moves
    assert bounds.bound == _day("2017-01-01")
    assert bounds.relax(set()) and bounds.bound is None
    assert not bounds.relax(set())


def test_build_failures_name_their_package() -> None:
    """Only a build failure names packages to move; a plain conflict names none."""
    built = "error: Failed to build `zope-interface==4.3.3` cause: The build backend"
    assert failed_builds(built) == {"zope-interface"}
    conflict = "Because only setuptools<=19.2 is available and you require setuptools>=40.8.0"
    assert failed_builds(conflict) == set()


def test_the_pep517_fallback_is_cra_s_own_requirement(tmp_path: Path) -> None:
    """A setup.py-only project gets setuptools from cra, and says so."""
    repo = make_repo(tmp_path / "old", [("2016-03-01T00:00:00Z", {**TESTS, "setup.py": "x"})])
    tree = GitTree(repo, git(repo, "rev-parse", "HEAD").strip())
    reqs = read_requirements(tree, tool_requirements=["pytest"])
    assert reqs.origin["setuptools>=40.8.0"] == FALLBACK_SOURCE
    assert reqs.origin["pytest"].startswith("cra")


def test_cra_s_tools_are_bounded_by_the_interpreter_not_the_era() -> None:
    """Tools for Python 3.11 are never older than 3.11 itself (plus the grace period)."""
    floor = tools_date("3.11")
    assert floor is not None and floor > _day("2022-10-24")
    assert tools_date("2.7") is None


@pytest.mark.parametrize(
    ("files", "wanted"),
    [
        ({"pytest.ini": "[pytest]\nasyncio_mode = auto\n"}, "pytest-asyncio"),
        ({"setup.cfg": "[tool:pytest]\naddopts = --cov=a -ra\n"}, "pytest-cov"),
        ({"tox.ini": "[pytest]\naddopts = -p xdist\n"}, "pytest-xdist"),
        (
            {"pyproject.toml": '[tool.pytest.ini_options]\nrequired_plugins = ["pytest-mock"]\n'},
            "pytest-mock",
        ),
        ({"conftest.py": "import hypothesis\nimport os\nimport a\n"}, "hypothesis"),
    ],
)
def test_the_test_configuration_names_its_plugins(
    tmp_path: Path, files: dict[str, str], wanted: str
) -> None:
    """Every configuration form pytest reads can name a plugin the era must have."""
    repo = make_repo(tmp_path / "cfg", [("2020-01-01T00:00:00Z", {**TESTS, **files})])
    tree = GitTree(repo, git(repo, "rev-parse", "HEAD").strip())
    needs = config_needs(tree, known={"pytest"})
    assert [n.requirement for n in needs] == [wanted]
    assert config_needs(tree, known={"pytest", wanted}) == []


def test_builtin_plugins_and_local_modules_are_not_needs(tmp_path: Path) -> None:
    """`pytest_plugins = ["pytester"]` and imports of the project itself need nothing."""
    conftest = 'import a\nfrom tests import helpers\npytest_plugins = ["pytester"]\n'
    repo = make_repo(
        tmp_path / "cfg", [("2020-01-01T00:00:00Z", {**TESTS, "conftest.py": conftest})]
    )
    tree = GitTree(repo, git(repo, "rev-parse", "HEAD").strip())
    assert config_needs(tree, known={"pytest"}) == []


def test_an_era_that_never_resolves_is_unusable_and_the_pack_goes_on(
    workspace: Workspace, tmp_path: Path, wheelhouse: Path
) -> None:
    """One broken era does not fail the pack: it is recorded with the resolver's message
    and where the requirement came from; the other eras are packed."""
    links = tmp_path / "links"
    shutil.copytree(wheelhouse, links)
    make_wheel(links, "eraprobe", "2.0")
    repo = make_repo(
        tmp_path / "eras",
        [
            ("2022-03-01T00:00:00Z", {**TESTS, "requirements.txt": "nosuchdist==1.0\n"}),
            ("2023-06-01T00:00:00Z", {"requirements.txt": "eraprobe>=2\n"}),
        ],
    )
    result = pack(workspace, str(repo), PackOptions(name="eras", find_links=links))
    manifest = load_manifest(result.package.manifest_path)
    old, new = manifest.environments
    assert not old.usable and new.usable
    assert "nosuchdist" in (old.unusable or "")
    assert "requirements.txt" in (old.unusable or "")
    assert old.requirements == () and old.attempts
    assert manifest.environment().id == new.id
    assert any("era 2022 is unusable" in w for w in result.warnings)


def test_a_pack_with_no_usable_era_fails_naming_each_reason(
    workspace: Workspace, tmp_path: Path, wheelhouse: Path
) -> None:
    """With every era broken there is nothing to pack: one error names why."""
    repo = make_repo(
        tmp_path / "bad",
        [("2022-03-01T00:00:00Z", {**TESTS, "requirements.txt": "nosuchdist==1.0\n"})],
    )
    with pytest.raises(CraError, match="nosuchdist"):
        pack(workspace, str(repo), PackOptions(name="bad", find_links=wheelhouse))
    assert not (workspace.repos_dir / "bad").exists()


def test_every_configuration_of_an_era_counts_not_only_its_last(tmp_path: Path) -> None:
    """An era whose early commits ran pytest with `--cov` needs pytest-cov even when its
    last commit no longer does."""
    cov = {"setup.cfg": "[tool:pytest]\naddopts = --cov\n"}
    repo = make_repo(
        tmp_path / "cov",
        [
            ("2020-02-01T00:00:00Z", {**TESTS, **cov}),
            ("2020-06-01T00:00:00Z", {"setup.cfg": "[tool:pytest]\naddopts = -ra\n"}),
        ],
    )
    head = git(repo, "rev-parse", "HEAD").strip()
    (era,) = split_eras(repo, head, months=12)
    trees = era_config_trees(repo, era)
    assert len(trees) == 1 and trees[0].sha != head
    assert [n.requirement for n in config_needs(trees[0], {"pytest"})] == ["pytest-cov"]


@pytest.mark.network
def test_a_project_pin_of_pytest_too_old_for_the_interpreter_is_overridden(
    tmp_path: Path,
) -> None:
    """`pytest<6` (a 2020 project's pin) cannot run on Python 3.11: cra's own tool is
    resolved for the interpreter instead, the rest of the era stays bounded."""
    from cra.repos.resolve import Resolver

    repo = make_repo(
        tmp_path / "old", [("2020-06-01T00:00:00Z", {**TESTS, "requirements.txt": "pytest<6\n"})]
    )
    tree = GitTree(repo, git(repo, "rev-parse", "HEAD").strip())
    reqs = read_requirements(tree, tool_requirements=["pytest"])
    resolver = Resolver(
        python="3.11",
        workdir=tmp_path / "w",
        find_links=None,
        use_index=True,
        uv_cache=tmp_path / "uv-cache",
        own_tools=("pytest",),
    )
    pins = resolver.pin(reqs, _day("2021-01-01"), tmp_path / "w" / "era")
    pytest_pin = next(p for p in pins if p.startswith("pytest=="))
    assert int(pytest_pin.split("==")[1].split(".")[0]) >= 7
