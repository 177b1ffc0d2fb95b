"""Write `docs/report.png` (the top of the report) and `docs/report-loop.png` (its loop
section): a small workspace in a temporary folder (the synthetic logs, three evaluated versions
of one adapter on a tiny random model, and a recorded three-cycle loop with a target on
that adapter's accuracy), its `cra report`, and headless chromium screenshots of it (HOME and
profile in the temporary folder, networking off with `unshare -n` where it works). The loop
shot is of a copy of the report whose other sections are hidden by one added style rule.

Run from the repository root: `.venv/bin/python scripts/report_screenshot.py`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from cra.adapters.registry import Registration, register, store_eval
from cra.db import loop as loop_store
from cra.fixtures.logs import build_synthetic_log
from cra.fixtures.model import build_tiny_model
from cra.report.build import write_report
from cra.workspace import Workspace, init_workspace

STEPS = ("ingest", "harness", "curate", "train", "evaluate", "promote")
STEP_SECONDS = 0.05  # a step's sleep per position and cycle, so each step draws a bar
ADAPTER = "scope"
ACCURACY = (0.55, 0.68, 0.74)
TARGET = f"{ADAPTER}.accuracy>=0.8"
ONLY_LOOP = "<style>body > section:not(#loop) { display: none; }</style>"
SHOTS = (("docs/report.png", False), ("docs/report-loop.png", True))


def register_versions(workspace: Workspace, base: Path) -> None:
    """One evaluated version of the adapter per cycle, on the tiny model at `base`."""
    for number, accuracy in enumerate(ACCURACY, start=1):
        staged = workspace.root / f"staged-{number}"
        staged.mkdir()
        (staged / "adapter_config.json").write_text('{"r": 4}')
        (staged / "adapter_model.safetensors").write_bytes(bytes([number]) * 64)
        register(workspace, Registration(ADAPTER, staged, base, None, "sft"))
        store_eval(workspace, ADAPTER, number, "holdout-1", {"metrics": {"accuracy": accuracy}})


def run_steps(conn: sqlite3.Connection, run: int, cycle: int) -> float:
    """The cycle's steps, each sleeping a little longer than the one before; the seconds."""
    began = time.monotonic()
    for position, step in enumerate(STEPS):
        loop_store.start_step(conn, run, cycle, position, step)
        time.sleep(STEP_SECONDS * (position + 1) * cycle)
        loop_store.end_step(
            conn, run, cycle, position, status="done", reason=None, counts={}, outputs={}
        )
    return time.monotonic() - began


def record_loop(workspace: Workspace, cycles: int = 3) -> None:
    """A finished loop run of `cycles` cycles through the loop store, each cycle's
    candidate the adapter's version of that number."""
    with closing(workspace.raw_db()) as conn:
        run = loop_store.start_run(conn, {"targets": [TARGET], "max_cycles": cycles})
        total = 0.0
        for cycle in range(1, cycles + 1):
            loop_store.start_cycle(conn, run, cycle, "tally")
            seconds = run_steps(conn, run, cycle)
            total += seconds
            loop_store.update_cycle(conn, run, cycle, runtime_s=seconds, tokens=1200 * cycle)
            summary = {"repo": "tally", "candidates": [f"{ADAPTER}@v{cycle}"], "promoted": []}
            loop_store.end_cycle(conn, run, cycle, status="done", promoted=0, summary=summary)
        loop_store.end_run(conn, run, reason="max_cycles", exit_code=0, runtime_s=total)


def chromium_argv(binary: str, tmp: Path, url: str, shot: Path) -> list[str]:
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
        url,
    ]
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True)
        if probe.returncode == 0:
            argv = ["unshare", "-n", *argv]
    return argv


def build_page(tmp: Path) -> Path:
    """The workspace's records and its report; the report's path."""
    workspace = init_workspace(tmp / "cra-demo").workspace
    with closing(workspace.raw_db()) as conn:
        build_synthetic_log(conn, tasks_per_repo=4)
    register_versions(workspace, build_tiny_model(tmp / "model"))
    record_loop(workspace)
    page = write_report(workspace, tmp / "out").path
    # The picture names the workspace as a user's would read, not the temporary folder.
    page.write_text(page.read_text().replace(f"{tmp}/", ""))
    return page


def loop_only(page: Path) -> Path:
    """A copy of the report next to it that shows only its loop section."""
    copy = page.with_name("report-loop.html")
    copy.write_text(page.read_text().replace("</head>", ONLY_LOOP + "</head>", 1))
    return copy


def screenshot(binary: str, tmp: Path, url: str, shot: Path) -> bool:
    """One headless chromium screenshot of `url` to `shot`; whether it was written."""
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config")}
    argv = chromium_argv(binary, tmp, url, shot)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not shot.is_file():
        print(done.stderr[-2000:], file=sys.stderr)
        return False
    print(f"wrote {shot}")
    return True


def main() -> int:
    """Build the workspace, write the report, take the screenshots."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        print("chromium is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cra-shot-") as name:
        tmp = Path(name)
        page = build_page(tmp)
        for path, only_loop in SHOTS:
            shot = Path(path).absolute()
            shot.unlink(missing_ok=True)
            url = (loop_only(page) if only_loop else page).as_uri()
            if not screenshot(binary, tmp, url, shot):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
