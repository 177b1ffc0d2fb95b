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
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def wait_for(condition: Callable[[], bool], *, timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(0.05)


def cra_popen(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`cra -w ROOT ARGS...` started in its own process (not waited for), with `env`
    added to the environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "cra", "-w", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _git(repo_dir: Path, *args: str, data: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", *args], cwd=repo_dir, env=env, check=True, capture_output=True, input=data
    ).stdout


def _rewritten(raw: bytes, parents: list[bytes]) -> bytes:
    head, _, message = raw.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not ln.startswith(b"parent ")]
    lines = [
        b"committer Rewriter <rewriter@example.com> 1893456000 +0000"
        if ln.startswith(b"committer ")
        else ln
        for ln in lines
    ]
    lines[1:1] = [b"parent " + p for p in parents]  # after the tree line
    return b"\n".join(lines) + b"\n\n" + message


def rewrite_history(repo_dir: Path) -> None:
    """Rewrite every commit of `repo_dir`'s HEAD with a new committer: same trees, authors
    and messages (bytes as they were), new shas, as after a force-push that rewrote
    history; the old commits are pruned. Works on a clone without a checkout."""
    mapping: dict[bytes, bytes] = {}
    history = _git(repo_dir, "rev-list", "--reverse", "--topo-order", "--parents", "HEAD")
    for line in history.splitlines():
        sha, *parents = line.split()
        raw = _git(repo_dir, "cat-file", "commit", sha.decode())
        new = _rewritten(raw, [mapping[p] for p in parents])
        mapping[sha] = _git(repo_dir, "hash-object", "-t", "commit", "-w", "--stdin", data=new)
        mapping[sha] = mapping[sha].strip()
    head = _git(repo_dir, "rev-parse", "HEAD").strip()
    branch = _git(repo_dir, "symbolic-ref", "-q", "HEAD").strip().decode()
    _git(repo_dir, "update-ref", branch, mapping[head].decode())
    _git(repo_dir, "reflog", "expire", "--expire=now", "--all")
    _git(repo_dir, "gc", "-q", "--prune=now")
