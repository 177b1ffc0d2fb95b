"""Helpers for the tests of one writer at a time and crash recovery: a process that holds
a workspace's writer lock, waiting for a path, rewriting a history."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HOLD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from cra.lock import writer_lock\n"
    "with writer_lock(Path(sys.argv[1]), sys.argv[2]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


def hold_lock(lock_path: Path, command: str) -> subprocess.Popen[str]:
    """A real process holding the writer lock at `lock_path` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_path), command],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def wait_for(condition: Callable[[], bool], *, timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(0.05)


def cra_popen(root: Path, *args: str) -> subprocess.Popen[str]:
    """`cra -w ROOT ARGS...` started in its own process (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cra", "-w", str(root), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def rewrite_history(repo_dir: Path) -> None:
    """Rewrite every commit of `repo_dir`'s HEAD (new committer dates): same trees, new
    shas, as after a force-push that rewrote history."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "FILTER_BRANCH_SQUELCH_WARNING": "1",
    }
    subprocess.run(
        ["git", "filter-branch", "-f", "--env-filter",
         "GIT_COMMITTER_DATE='2030-01-01T00:00:00+00:00'; export GIT_COMMITTER_DATE", "HEAD"],
        cwd=repo_dir, env=env, check=True, capture_output=True,
    )  # fmt: skip
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/original/"],
        cwd=repo_dir, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for ref in refs:
        subprocess.run(["git", "update-ref", "-d", ref], cwd=repo_dir, env=env, check=True)
    subprocess.run(
        ["git", "reflog", "expire", "--expire=now", "--all"], cwd=repo_dir, env=env, check=True
    )
    subprocess.run(["git", "gc", "-q", "--prune=now"], cwd=repo_dir, env=env, check=True)
