"""The home guard of `tests/conftest.py` holds on a fresh machine: HOME and every cache
point into a temporary home before any library is imported (huggingface_hub fixes its
cache paths at import, even at collection), each test gets its own, and a test or a
session that writes to the real home fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CACHE_VARS, REPO_ROOT, changed_entries, home_snapshot

# Imported at collection, as trl's test module imports `datasets`: the paths fixed then
# must already be temporary.
LEAKY_MODULE = """
import os
import huggingface_hub.constants as hub

os.makedirs(hub.HF_HUB_CACHE, exist_ok=True)  # what a model or dataset load does
FIXED = hub.HF_HUB_CACHE


def test_nothing():
    print("HUB", FIXED)
"""


def _child_session(tmp_path: Path, module: str, *, guarded: bool) -> tuple[Path, str, int]:
    """Run pytest in a fresh process on a `tests` package holding `module`, with the
    real conftest.py and helpers.py when `guarded`, HOME a fake real home and none of
    the cache variables set (a fresh machine). Returns the fake home and the output."""
    project, home = tmp_path / "project", tmp_path / "real-home"
    package = project / "tests"
    package.mkdir(parents=True)
    home.mkdir()
    (package / "__init__.py").write_text("")
    if guarded:
        for name in ("conftest.py", "helpers.py"):
            (package / name).symlink_to(REPO_ROOT / "tests" / name)
    (package / "test_module.py").write_text(module)
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS and k != "CRA_HOME"}
    env["HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return home, proc.stdout + proc.stderr, proc.returncode


@pytest.mark.slow
def test_a_cache_fixed_at_collection_lands_in_the_session_home(tmp_path):
    """A cache path fixed at collection lands in the session's home, not the real one."""
    home, output, code = _child_session(tmp_path, LEAKY_MODULE, guarded=True)
    assert code == 0, output
    hub = Path(output.split("HUB ")[1].split()[0])
    assert "cra-tests-home-" in str(hub) and not hub.is_relative_to(home)
    assert not (home / ".cache").exists()
    # The control: without the guard the same module writes into the real home.
    bare_home, output, code = _child_session(tmp_path / "bare", LEAKY_MODULE, guarded=False)
    assert code == 0, output
    assert (bare_home / ".cache" / "huggingface" / "hub").is_dir()


@pytest.mark.slow
def test_a_session_that_writes_to_the_real_home_fails(tmp_path):
    """A test session that writes to the real home outside any test fails, naming the entry."""
    module = (
        "import os\n"
        "from tests.helpers import REAL_HOME\n"
        "(REAL_HOME / '.cache').mkdir()  # at collection, outside any test\n"
        "def test_nothing():\n    pass\n"
    )
    _home, output, code = _child_session(tmp_path, module, guarded=True)
    assert code == 1, output
    assert "the session wrote to the real home: .cache" in output


@pytest.mark.slow
def test_a_test_that_writes_to_the_real_home_fails(tmp_path):
    """A test that writes to the real home fails, naming the entry."""
    module = (
        "from tests.helpers import REAL_HOME\n"
        "def test_leaks():\n    (REAL_HOME / '.config').mkdir()\n"
    )
    _home, output, code = _child_session(tmp_path, module, guarded=True)
    assert code == 1, output
    assert "test wrote to the real home directory: .config" in output


def test_each_test_has_its_own_home_and_caches(isolated_home):
    """Each test runs with its own HOME and cache folders, with the model hub offline."""
    assert os.environ["HOME"] == str(isolated_home)
    for name, place in CACHE_VARS.items():
        assert Path(os.environ[name]) == isolated_home / place, name
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_snapshots_see_new_and_changed_entries(tmp_path):
    """Home snapshots report new and changed watched entries, ignoring unwatched ones."""
    (tmp_path / ".cache").mkdir()
    before = home_snapshot(tmp_path)
    (tmp_path / ".cache" / "uv").mkdir()
    (tmp_path / ".gitconfig").write_text("[user]\n")
    (tmp_path / "unwatched").mkdir()
    assert changed_entries(before, home_snapshot(tmp_path)) == [
        ".cache",
        ".cache/uv",
        ".gitconfig",
    ]
