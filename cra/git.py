"""Running git: one function, clear errors, no user configuration leaking in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cra.errors import CraError


class GitError(CraError, RuntimeError):
    """A git command failed."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {returncode}"
        super().__init__(f"git {' '.join(args[:3])} failed: {detail}")
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr


def git_env() -> dict[str, str]:
    """The environment git runs in: no global/system config, no prompts, C locale."""
    env = dict(os.environ)
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    return env


def git_bytes(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    """Run `git ARGS` in `cwd` and return its raw stdout; raise GitError on failure."""
    if shutil.which("git") is None:
        raise CraError("git is not installed", hint="install git and try again")
    proc = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env=git_env(), check=False
    )
    if proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def git(*args: str, cwd: Path, input: str | None = None) -> str:
    """Run `git ARGS` in `cwd` and return stdout as text (invalid UTF-8 replaced)."""
    out = git_bytes(*args, cwd=cwd, input=None if input is None else input.encode())
    return out.decode("utf-8", "replace")
