"""Requirements are read from a project's files as they were at one commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.errors import UsageError
from cra.repos.requirements import GitTree, read_requirements
from tests.repos.helpers import PYPROJECT, git, make_repo


def _tree(tmp_path: Path, files: dict[str, str | None]) -> GitTree:
    repo = make_repo(tmp_path / "r", [("2024-03-01T00:00:00Z", files)])
    return GitTree(repo, git(repo, "rev-parse", "HEAD").strip())


def test_every_source_is_read_with_includes_and_self_extras(tmp_path: Path) -> None:
    """Requirements come from every source, following includes and self extras, skips reasoned."""
    tree = _tree(
        tmp_path,
        {
            "pyproject.toml": PYPROJECT,
            "requirements-dev.txt": "-r requirements/base.txt\n-c constraints.txt\nmock  # tests\n"
            "-e .\n./local\nhttps://example.com/x.whl\n",
            "requirements/base.txt": "requests>=2 ; python_version >= '3'\n",
            "constraints.txt": "urllib3<3\n",
            "tox.ini": "[testenv]\ndeps =\n    tox-only-dep\n    py38: old-dep\n    {[base]deps}\n",
            "src/demo_pkg/__init__.py": "",
        },
    )
    reqs = read_requirements(tree, extra_requirements=["pytest-timeout"])
    assert reqs.project_name == "demo-pkg"
    assert reqs.requires_python == ">=3.9"
    assert reqs.requirements == [
        "setuptools>=61",
        "setuptools-scm>=8",
        "attrs>=22",
        "pytest>=7",
        "coverage",
        "hypothesis",
        "ruff",
        "requests>=2 ; python_version >= '3'",
        "mock",
        "tox-only-dep",
        "pytest-timeout",
    ]
    assert "sphinx" not in reqs.requirements  # the docs extra was not asked for
    assert reqs.constraints == ["urllib3<3"]
    skipped = dict(reqs.skipped)
    assert skipped["-e ."].endswith("option")
    assert "not a requirement" in skipped["./local"]
    assert skipped["py38: old-dep"] == "tox.ini: substitution or factor condition"
    assert "dependency group [test]" in reqs.sources


def test_asked_extras_and_groups_must_exist(tmp_path: Path) -> None:
    """An asked extra or dependency group that does not exist is a usage error listing choices."""
    tree = _tree(tmp_path, {"pyproject.toml": PYPROJECT})
    reqs = read_requirements(tree, extras=["docs"], groups=["lint"], strict=True)
    assert "sphinx" in reqs.requirements
    with pytest.raises(UsageError, match="no extra 'nope'") as info:
        read_requirements(tree, extras=["nope"], strict=True)
    assert "cov, docs, test" in (info.value.hint or "")
    with pytest.raises(UsageError, match="no dependency group 'nope'"):
        read_requirements(tree, groups=["nope"], strict=True)
