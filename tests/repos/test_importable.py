"""A project's layout (how it is made importable, which command runs its tests) is read
from its files as they were at one commit."""

from __future__ import annotations

from pathlib import Path

from cra.repos.importable import detect_layout
from cra.repos.requirements import GitTree, read_requirements
from tests.repos.helpers import PYPROJECT, git, make_repo


def _tree(tmp_path: Path, files: dict[str, str | None]) -> GitTree:
    repo = make_repo(tmp_path / "r", [("2024-03-01T00:00:00Z", files)])
    return GitTree(repo, git(repo, "rev-parse", "HEAD").strip())


def test_layout_prefers_pythonpath_for_src_layouts(tmp_path: Path) -> None:
    """A src layout is made importable by putting src on PYTHONPATH and testing with pytest."""
    tree = _tree(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "p"\n',
            "src/p/__init__.py": "",
            "tests/test_p.py": "def test(): pass\n",
        },
    )
    layout = detect_layout(tree, read_requirements(tree))
    assert (layout.mode, layout.pythonpath, layout.test_command) == (
        "pythonpath",
        ("src",),
        "python -m pytest",
    )


def test_layout_of_a_flat_project_puts_its_root_on_the_path(tmp_path: Path) -> None:
    """A flat project is made importable by putting its root on PYTHONPATH."""
    tree = _tree(tmp_path, {"flat/__init__.py": "", "test_flat.py": "def test(): pass\n"})
    layout = detect_layout(tree, read_requirements(tree))
    assert (layout.mode, layout.pythonpath) == ("pythonpath", (".",))


def test_vcs_version_file_needs_an_editable_install(tmp_path: Path) -> None:
    """A VCS-versioned project needs an editable install with the version pretended."""
    tree = _tree(tmp_path, {"pyproject.toml": PYPROJECT, "src/demo_pkg/__init__.py": ""})
    layout = detect_layout(tree, read_requirements(tree), version="2.5")
    assert layout.mode == "editable"
    assert layout.env == {"SETUPTOOLS_SCM_PRETEND_VERSION": "2.5"}


def test_no_tests_and_no_pytest_config_gives_no_command(tmp_path: Path) -> None:
    """A tree with no tests and no pytest config gets no test command."""
    tree = _tree(tmp_path, {"pkg/__init__.py": "", "README.md": "hi\n"})
    assert detect_layout(tree, read_requirements(tree)).test_command is None
