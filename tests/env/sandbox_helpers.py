"""A hostile repository for sandboxed-build tests: its `setup.py` (with `ext_modules`, so
auto mode picks an editable install) writes a marker to a host path whenever it runs, and
generates a module from the commit's tree, which the tests import."""

from __future__ import annotations

from pathlib import Path

from tests.repos.helpers import git

SETUP_PY = """import os
import pathlib

from setuptools import setup

try:  # a hostile build: leave a mark on the host, if it can reach it
    pathlib.Path({marker!r}).write_text("setup.py ran with uid %d" % os.getuid())
except OSError:
    pass
level = pathlib.Path("hostile", "LEVEL.txt").read_text().strip()
pathlib.Path("hostile", "_generated.py").write_text("LEVEL = %s\\n" % level)
setup(name="hostile", version="1.0", packages=["hostile"], ext_modules=[])
"""

TESTS = """from hostile import _generated
from hostile.core import double


def test_double():
    assert double(2) == 4


def test_level_is_built_from_this_commit():
    assert _generated.LEVEL == {level}
"""


def commit(repo: Path, message: str, files: dict[str, str], day: int) -> str:
    """Write `files`, commit them with `message` on March `day` 2024; the new sha."""
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, date=f"2024-03-{day:02d}T12:00:00+00:00")
    return git(repo, "rev-parse", "HEAD").strip()


def hostile_repo(path: Path, marker: Path) -> tuple[Path, str]:
    """The hostile repository at `path` and the sha of its one fix: the fix raises the
    generated LEVEL from 1 to 2 and its tests expect 2 (FAIL_TO_PASS only when each
    commit's own tree is built)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit(
        path,
        "Start the project",
        {
            "setup.py": SETUP_PY.format(marker=str(marker)),
            "hostile/__init__.py": "",
            "hostile/LEVEL.txt": "1\n",
            "hostile/core.py": "def double(x):\n    return x * 2\n",
            "tests/test_core.py": TESTS.format(level=1),
            "pytest.ini": "[pytest]\ntestpaths = tests\n",
        },
        1,
    )
    fix = commit(
        path,
        "Raise the level of the generated module to two",
        {
            "hostile/LEVEL.txt": "2\n",
            "hostile/core.py": "def double(x):\n    # two, the level\n    return x + x\n",
            "tests/test_core.py": TESTS.format(level=2),
        },
        2,
    )
    return path, fix
