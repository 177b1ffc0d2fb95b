"""Write `docs/report.png`: a small workspace (the synthetic logs and a recorded three-cycle
loop) in a temporary folder, its `cra report`, and a headless chromium screenshot of it
(HOME and profile in the temporary folder, networking off with `unshare -n` where it works).

Run from the repository root: `.venv/bin/python scripts/report_screenshot.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from cra.db import loop as loop_store
from cra.fixtures.logs import build_synthetic_log
from cra.report.build import write_report
from cra.workspace import Workspace, init_workspace

STEPS = ("ingest", "harness", "curate", "train", "evaluate", "promote")


def record_loop(workspace: Workspace, cycles: int = 3) -> None:
    """A finished loop run of `cycles` cycles through the loop store."""
    with closing(workspace.raw_db()) as conn:
        run = loop_store.start_run(conn, {"targets": [], "max_cycles": cycles})
        for cycle in range(1, cycles + 1):
            loop_store.start_cycle(conn, run, cycle, "tally")
            for position, step in enumerate(STEPS):
                loop_store.start_step(conn, run, cycle, position, step)
                loop_store.end_step(
                    conn, run, cycle, position, status="done", reason=None, counts={}, outputs={}
                )
            loop_store.update_cycle(conn, run, cycle, runtime_s=40.0 * cycle, tokens=1200 * cycle)
            summary = {"repo": "tally", "candidates": [], "promoted": []}
            loop_store.end_cycle(conn, run, cycle, status="done", promoted=0, summary=summary)
        loop_store.end_run(conn, run, reason="max_cycles", exit_code=0, runtime_s=240.0)


def chromium_argv(binary: str, tmp: Path, page: Path, shot: Path) -> list[str]:
    """The headless chromium command line, inside `unshare -n` where that works."""
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=30000",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.as_uri(),
    ]
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True)
        if probe.returncode == 0:
            argv = ["unshare", "-n", *argv]
    return argv


def main() -> int:
    """Build the workspace, write the report, take the screenshot."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        print("chromium is not installed", file=sys.stderr)
        return 1
    shot = Path("docs/report.png").absolute()
    with tempfile.TemporaryDirectory(prefix="cra-shot-") as name:
        tmp = Path(name)
        workspace = init_workspace(tmp / "ws").workspace
        with closing(workspace.raw_db()) as conn:
            build_synthetic_log(conn, tasks_per_repo=4)
        record_loop(workspace)
        page = write_report(workspace, tmp / "out").path
        env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config")}
        argv = chromium_argv(binary, tmp, page, shot)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not shot.is_file():
        print(done.stderr[-2000:], file=sys.stderr)
        return 1
    print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
