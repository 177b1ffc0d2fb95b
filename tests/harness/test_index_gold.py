"""Indexing with the blob cache, and gold extraction from real diffs."""

from __future__ import annotations

from pathlib import Path

from cra.harness.gold import diff_changes, touched_symbols
from cra.harness.index import Indexer
from tests.harness.gitutil import Repo

UTIL_V1 = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n\n\ndef wrap(x):\n    return x\n"
UTIL_V2 = UTIL_V1.replace(
    "    return max", "    if lo > hi:\n        raise ValueError('lo > hi')\n    return max"
)
API = (
    "from app.util import clamp\n\n\n"
    "class Api:\n    def get(self, x):\n        return clamp(x, 0, 9)\n"
)


def test_second_commit_reparses_only_changed_files(tmp_path: Path, workspace) -> None:
    """Indexing parses only blobs not yet in the database, even from a fresh indexer."""
    repo = Repo(tmp_path / "r")
    files = {f"app/m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(10)}
    first = repo.commit({**files, "app/util.py": UTIL_V1}, "Add modules")
    second = repo.commit({"app/util.py": UTIL_V2, "app/new.py": "X = 1\n"}, "Change util")
    curated = workspace.curated_db()
    index1 = Indexer(curated, repo.path).index(first)
    assert (index1.reparsed, index1.reused) == (11, 0)
    # A fresh indexer (no memory cache) still reuses the DB: only 2 new blobs parse.
    index2 = Indexer(curated, repo.path).index(second)
    assert index2.reparsed == 2
    assert index2.reused == 10
    assert [s.qualname for s in index2.symbols("app/util.py")] == ["clamp", "wrap"]
    again = Indexer(curated, repo.path).index(second)
    assert again.reparsed == 0
    blobs = curated.execute("SELECT count(*) FROM blobs").fetchone()[0]
    assert blobs == 13


def test_parse_errors_are_recorded_and_the_rest_indexed(tmp_path: Path, workspace) -> None:
    """Syntax errors are recorded per file and the parseable symbols still indexed."""
    repo = Repo(tmp_path / "r")
    sha = repo.commit(
        {"good.py": "def fine():\n    pass\n", "bad.py": "def nope(:\n    pass\ndef ok(): pass\n"},
        "Add",
    )
    index = Indexer(workspace.curated_db(), repo.path).index(sha)
    assert index.errors() == {"bad.py": "syntax errors at lines 1"}
    assert [s.qualname for s in index.symbols("good.py")] == ["fine"]
    assert "ok" in [s.qualname for s in index.symbols("bad.py")]


def test_gold_symbols_modified_added_deleted(tmp_path: Path, workspace) -> None:
    """A diff's gold symbols are marked modified, added or deleted against the parent."""
    repo = Repo(tmp_path / "r")
    parent = repo.commit({"app/util.py": UTIL_V1, "app/api.py": API}, "Add app")
    new_util = UTIL_V2.replace("def wrap(x):\n    return x\n", "def unwrap(y):\n    return y\n")
    sha = repo.commit({"app/util.py": new_util}, "Validate bounds in clamp")
    changes = diff_changes(repo.path, parent, sha)
    assert [c.path for c in changes] == ["app/util.py"]
    indexer = Indexer(workspace.curated_db(), repo.path)
    old = indexer.index(parent).symbols("app/util.py")
    new = indexer.index(sha).symbols("app/util.py")
    got = {(g.qualname, g.change) for g in touched_symbols(changes[0], old, new)}
    assert got == {("clamp", "modified"), ("wrap", "deleted"), ("unwrap", "added")}


def test_renames_and_deletions_in_diffs(tmp_path: Path) -> None:
    """Diff changes carry renames, deletions, new files and paths with spaces, with lines."""
    repo = Repo(tmp_path / "r")
    parent = repo.commit(
        {"app/utils.py": UTIL_V1, "app/gone.py": "def g():\n    pass\n", "a b.py": "x = 1\n"},
        "Add",
    )
    repo.git("mv", "app/utils.py", "app/helpers.py")
    sha = repo.commit(
        {
            "app/gone.py": None,
            "a b.py": "x = 2\n",
            "app/new.py": "import os\n\nVALUE = os.sep * 3\n",
        },
        "Rename utils to helpers",
    )
    changes = {c.path: c for c in diff_changes(repo.path, parent, sha)}
    assert set(changes) == {"app/helpers.py", "app/gone.py", "a b.py", "app/new.py"}
    assert changes["app/helpers.py"].renamed
    assert changes["app/helpers.py"].old_path == "app/utils.py"
    assert changes["app/gone.py"].new_path is None
    assert changes["app/gone.py"].old_lines == (1, 2)
    assert changes["app/new.py"].old_path is None
    assert changes["a b.py"].new_lines == (1,)
