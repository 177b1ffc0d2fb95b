"""Requirements a setup.py declares are read from its source, never by running it."""

from __future__ import annotations

from pathlib import Path

from cra.repos.requirements import GitTree, read_requirements, tox_extras
from cra.repos.setuppy import read_setup_py
from tests.repos.helpers import git, make_repo

SETUP = """
from setuptools import setup
INSTALL_REQUIRES = ["six>=1.0"]
EXTRAS_REQUIRE = {"docs": ["sphinx"], "tests": ["hypothesis", "pytest>=4"]}
EXTRAS_REQUIRE["dev"] = EXTRAS_REQUIRE["tests"] + EXTRAS_REQUIRE["docs"] + ["pre-commit"]
if __name__ == "__main__":
    setup(name="demo", install_requires=INSTALL_REQUIRES, extras_require=EXTRAS_REQUIRE,
          tests_require=["mock"])
"""


def test_literals_and_names_bound_to_them_are_read() -> None:
    """install_requires, tests_require and extras_require through module-level names,
    `+` of lists and subscript assignment."""
    declared = read_setup_py(SETUP)
    assert declared.install == ("six>=1.0",)
    assert declared.tests == ("mock",)
    assert declared.extras["dev"] == ("hypothesis", "pytest>=4", "sphinx", "pre-commit")


def test_anything_computed_is_left_out_not_guessed() -> None:
    """A requirement list built by code (a file read, a call) yields nothing."""
    text = "from setuptools import setup\nsetup(install_requires=open('r.txt').read().split())"
    assert read_setup_py(text).install == ()
    assert read_setup_py("this is not python(").install == ()


def test_a_setup_py_project_gets_its_test_extra_and_tox_extras(tmp_path: Path) -> None:
    """A setup.py-only project's `tests` extra is installed, and so is an extra that tox
    names for [testenv] (with a substitution's default)."""
    tox = "[testenv]\nextras = {env:TOX_EXTRAS:ci}\n"
    setup = SETUP.replace('"docs": ["sphinx"]', '"ci": ["coverage"]')
    repo = make_repo(
        tmp_path / "p", [("2019-01-01T00:00:00Z", {"setup.py": setup, "tox.ini": tox})]
    )
    tree = GitTree(repo, git(repo, "rev-parse", "HEAD").strip())
    assert tox_extras(tree) == ["ci"]
    reqs = read_requirements(tree)
    assert {"six>=1.0", "mock", "hypothesis", "pytest>=4", "coverage"} <= set(reqs.requirements)
    assert "sphinx" not in reqs.requirements
    assert reqs.origin["six>=1.0"].startswith("setup.py")


def test_tox_commands_and_dependency_groups_name_what_the_tests_need(tmp_path: Path) -> None:
    """`pip install -e .[d]` in [testenv] commands is an extra the tests need, and
    `dependency_groups = cov-tests` a group."""
    from cra.repos.requirements import tox_groups

    tox = "[testenv]\ndependency_groups = cov-tests\ncommands =\n    pip install -e .[d]\n"
    pyproject = (
        '[project]\nname = "p"\n[project.optional-dependencies]\nd = ["aiohttp"]\n'
        '[dependency-groups]\ncov-tests = ["pytest-cov"]\n'
    )
    repo = make_repo(
        tmp_path / "p", [("2024-01-01T00:00:00Z", {"pyproject.toml": pyproject, "tox.ini": tox})]
    )
    tree = GitTree(repo, git(repo, "rev-parse", "HEAD").strip())
    assert tox_extras(tree) == ["d"] and tox_groups(tree) == ["cov-tests"]
    assert {"aiohttp", "pytest-cov"} <= set(read_requirements(tree).requirements)
