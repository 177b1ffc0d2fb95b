"""The installers cra drives (uv, pip) and the environment they run in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cra.errors import CraError


def uv_binary() -> Path | None:
    """The uv executable: the one shipped with the `uv` package, else uv on PATH."""
    try:
        from uv import find_uv_bin

        return Path(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        return Path(found) if found else None


def tool_env(uv_cache: Path | None = None, *, offline: bool = False) -> dict[str, str]:
    """The environment uv and pip run in: never download an interpreter, optional cache."""
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("VIRTUAL_ENV", None)
    if uv_cache is not None:
        env["UV_CACHE_DIR"] = str(uv_cache)
    if offline:
        env["UV_OFFLINE"] = "1"
        env["PIP_NO_INDEX"] = "1"
    return env


class ToolError(CraError, RuntimeError):
    """An installer (uv or pip) failed; carries its output."""

    def __init__(self, what: str, output: str, *, hint: str | None = None) -> None:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        tail = " | ".join(line.strip() for line in lines[-3:]) if lines else "no output"
        super().__init__(f"{what} failed: {tail}", hint=hint)
        self.output = output


def run_tool(
    argv: list[str],
    *,
    what: str,
    env: dict[str, str],
    cwd: Path | None = None,
    hint: str | None = None,
) -> str:
    """Run an installer; return its stdout, or raise ToolError with its output."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ToolError(what, proc.stderr + proc.stdout, hint=hint)
    return proc.stdout


def pip_argv() -> list[str]:
    """How to run pip: the pip of the interpreter running cra."""
    return [sys.executable, "-m", "pip"]
