"""Hostile repository histories for validation tests: the packed `tally` package with its
clone replaced by a short history whose tests attack the harness, each attack followed
by an honest bug fix that must still be validated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cra.db import transaction
from cra.harness.testpaths import is_test_path
from cra.repos.layout import register_repo
from cra.workspace import Workspace, open_workspace

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}
CORE = 'def shout(text):\n    return text + "!"\n'
FIXED = 'def shout(text):\n    return text.upper() + "!"\n'
FIX_TEST = "from app.core import shout\n\n\ndef test_shout():\n    assert shout('a') == 'A!'\n"
PYPROJECT = '[tool.pytest.ini_options]\npythonpath = ["src", "tests"]\n'
REPORT_WRITER = '''import os


def write_report(data):
    """Write `data` into the report cra handed in, however it is handed in."""
    fd = os.environ.get("CRA_REPORT_FD")
    if fd:
        os.write(int(fd), data)
    path = os.environ.get("CRA_REPORT_PATH")
    if path:
        with open(path, "ab") as fh:
            fh.write(data)
'''


@dataclass(frozen=True)
class HostileHistory:
    """The clone's folder and the two commits that matter: the attack and the fix after."""

    repo: Path
    attack: str
    fix: str


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in `repo` with no user or system config; return its stdout, stripped."""
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str], day: int) -> str:
    """Write `files` (a value starting with `-> ` is a symlink to the rest) and commit."""
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("-> "):
            target.symlink_to(text[3:])
        else:
            target.write_text(text)
    git(repo, "add", "-A")
    stamp = f"2024-03-{day:02d}T12:00:00+00:00"
    dates = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    git(repo, "commit", "-q", "-m", message, env=dates)
    return git(repo, "rev-parse", "HEAD")


def qualify(workspace: Workspace, repo: Path, shas: list[str], name: str = "tally") -> None:
    """Record `shas` as qualifying commits of `name`, the way mining does."""
    with closing(workspace.raw_db()) as conn:
        repo_id = register_repo(conn, name)
        with transaction(conn):
            for sha in shas:
                parent = git(repo, "rev-parse", f"{sha}^")
                when = git(repo, "show", "-s", "--format=%aI", sha)
                ts = int(git(repo, "show", "-s", "--format=%at", sha))
                diff_tree = ("diff-tree", "--no-commit-id", "--name-only", "-r", parent, sha)
                names = git(repo, *diff_tree).split()
                source_files = json.dumps([n for n in names if not is_test_path(n)])
                test_files = json.dumps([n for n in names if is_test_path(n)])
                conn.execute(
                    "INSERT INTO commits (repo_id, sha, parent_sha, authored_at, authored_ts, "
                    "subject, task_text, files_source, files_tests, verdict, stage, mined_at) "
                    "VALUES (?, ?, ?, ?, ?, 's', 's', ?, ?, 'qualified', 'qualified', 'now')",
                    (repo_id, sha, parent, when, ts, source_files, test_files),
                )


def hostile_history(workspace: Workspace, packed: Path, attack: dict[str, str]) -> HostileHistory:
    """Replace the package's clone by: a start, a commit adding `attack` (files, among
    them a test module) with a small source change, and then a real bug fix whose own
    test fails before and passes after. Both later commits qualify."""
    repo = packed / "repo"
    shutil.rmtree(repo)
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    start = {
        "src/app/__init__.py": "",
        "src/app/core.py": CORE,
        "tests/test_core.py": "def test_nothing():\n    pass\n",
        "tests/report_writer.py": REPORT_WRITER,
        "pyproject.toml": PYPROJECT,
    }
    commit(repo, "Start", start, 1)
    attacked = commit(repo, "Add extra", {"src/app/extra.py": "X = 1\n", **attack}, 2)
    fix = {"src/app/core.py": FIXED, "tests/test_core.py": FIX_TEST}
    fixed = commit(repo, "Fix shout to upper-case", fix, 3)
    qualify(workspace, repo, [attacked, fixed])
    return HostileHistory(repo, attacked, fixed)


def set_setting(workspace: Workspace, old: str, new: str) -> Workspace:
    """Replace the line `old` of the workspace's cra.toml by `new`; return the workspace
    opened again, with the new settings."""
    path = workspace.root / "cra.toml"
    text = path.read_text()
    if old not in text:
        raise ValueError(f"cra.toml has no line {old!r}")
    path.write_text(text.replace(old, new))
    return open_workspace(workspace.root)


def raw_db_text(workspace: Workspace) -> str:
    """Everything raw.db holds, as SQL text."""
    with closing(workspace.raw_db()) as conn:
        return "\n".join(conn.iterdump())


def qualify_missing(workspace: Workspace, sha: str, parent: str, name: str = "tally") -> None:
    """Record `sha`, a commit the clone does not have (history rewritten since mining),
    as qualifying, authored before every other commit."""
    with closing(workspace.raw_db()) as conn:
        repo_id = register_repo(conn, name)
        with transaction(conn):
            conn.execute(
                "INSERT INTO commits (repo_id, sha, parent_sha, authored_at, authored_ts, "
                "subject, task_text, files_source, files_tests, verdict, stage, mined_at) "
                "VALUES (?, ?, ?, '2024-03-01T18:00:00+00:00', 1709316000, 's', 's', "
                "'[\"src/app/core.py\"]', '[\"tests/test_core.py\"]', 'qualified', "
                "'qualified', 'now')",
                (repo_id, sha, parent),
            )
