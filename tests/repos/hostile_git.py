"""Hostile git folders for tests: configuration, attributes and hooks that would each run
a command writing a marker file on the host if git ever ran them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.repos.helpers import ENV


def hostile_config(markers: Path) -> str:
    """A git config whose every command writes `markers/<trap>` (and still behaves like
    the harmless command it replaces, so that only the marker tells it ran)."""

    def touch(trap: str, then: str) -> str:
        return f"\"sh -c 'touch {markers / trap}; {then}' --\""

    return f"""[core]
\trepositoryformatversion = 0
\tbare = false
\tfsmonitor = {touch("fsmonitor", "exit 1")}
\tpager = {touch("pager", "cat")}
[diff]
\texternal = {touch("external", "exit 0")}
[diff "x"]
\ttextconv = {touch("textconv", "cat $1")}
[filter "f"]
\tsmudge = {touch("smudge", "cat >/dev/null")}
\tclean = {touch("clean", "cat")}
[log]
\tshowSignature = true
[gpg]
\tprogram = {touch("gpg", "exit 1")}
"""


HOOKS = ("reference-transaction", "post-checkout", "pre-auto-gc", "post-index-change")


def plant(gitdir: Path, markers: Path) -> None:
    """Make `gitdir` hostile: its config, `info/attributes` and hooks all write markers."""
    markers.mkdir(parents=True, exist_ok=True)
    (gitdir / "config").write_text(hostile_config(markers))
    (gitdir / "info").mkdir(exist_ok=True)
    (gitdir / "info" / "attributes").write_text("* diff=x filter=f\n")
    hooks = gitdir / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in HOOKS:
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {markers / 'hook'}\n")
        hook.chmod(0o755)


def plant_via_commondir(gitdir: Path, markers: Path) -> None:
    """Point `gitdir` at a hostile copy of itself through a `commondir` file, the way a
    package slips a config past a check that reads only `.git/config`."""
    common = gitdir / "common"
    common.mkdir()
    for entry in ("objects", "refs", "packed-refs", "HEAD", "logs", "info"):
        source = gitdir / entry
        if source.is_dir():
            shutil.copytree(source, common / entry)
        elif source.exists():
            shutil.copy2(source, common / entry)
    plant(common, markers)
    (gitdir / "commondir").write_text("common\n")


def add_index(worktree: Path) -> None:
    """Give a clone an index of its HEAD (what makes git consult `core.fsmonitor`)."""
    subprocess.run(
        [
            "git",
            "-c",
            "core.fsmonitor=false",
            "-c",
            f"core.hooksPath={os.devnull}",
            "read-tree",
            "HEAD",
        ],
        cwd=worktree,
        env={**os.environ, **ENV},
        check=True,
        capture_output=True,
    )


def markers_written(markers: Path) -> list[str]:
    """The traps that fired: every marker present in `markers`."""
    return sorted(p.name for p in markers.iterdir()) if markers.is_dir() else []


def fired_without_cra(repo: Path, markers: Path) -> list[str]:
    """The traps plain git (no hardening) fires in `repo`: proof that the fixture bites."""
    env = {**os.environ, **ENV}
    for args in (["status"], ["log", "-p", "-1"], ["archive", "HEAD"], ["diff", "HEAD~1"]):
        subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=False)
    fired = markers_written(markers)
    for marker in markers.iterdir():
        marker.unlink()
    return fired
