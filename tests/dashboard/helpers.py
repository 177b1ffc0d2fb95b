"""Helpers for the dashboard tests: a dashboard served in-process or by `cra dashboard`,
a writer process that records loop steps and harness runs at full speed, and chromium
pointed at the live page.

Run as `python -m tests.dashboard.helpers ROOT SECONDS` it is that writer: it prints one
JSON line, how many writes it made and how many hit "database is locked".
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.db import loop as loop_store
from cra.db.repos import repo_id, repo_names
from cra.db.runs import finish_run, start_run
from cra.workspace import open_workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = ("ingest", "harness", "plan", "curate", "train", "evaluate", "promote", "check")


def get(
    url: str, path: str, *, method: str = "GET", host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request sent as written (no path normalising): status, headers, body."""
    address = url.removeprefix("http://").rstrip("/")
    conn = http.client.HTTPConnection(address, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def data(url: str, query: str = "") -> dict[str, Any]:
    """The dashboard's `/api/data` (with `query`), parsed."""
    status, _headers, body = get(url, f"/api/data{query}")
    if status != 200:
        raise AssertionError(f"/api/data answered {status}: {body[:200]!r}")
    return dict(json.loads(body))


@dataclass
class Served:
    """`cra dashboard` running in a child process, and the URL it printed."""

    process: subprocess.Popen[str]
    url: str

    def stop(self) -> tuple[int, str]:
        """SIGTERM it; its exit code and stderr."""
        self.process.send_signal(signal.SIGTERM)
        _out, err = self.process.communicate(timeout=30)
        return self.process.returncode, err


def start_dashboard(root: Path) -> Served:
    """`cra -w ROOT dashboard --port 0 --json` in a child process, once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cra", "-w", str(root), "dashboard", "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    if process.stdout is None:
        raise RuntimeError("no stdout pipe")
    line = process.stdout.readline()
    if not line:
        _out, err = process.communicate(timeout=30)
        raise AssertionError(f"cra dashboard did not start: {err[-2000:]}")
    return Served(process, json.loads(line)["url"])


def start_loop(conn: sqlite3.Connection, *, max_cycles: int = 5) -> int:
    """A running loop run with cycle 1 started on its first step; its id."""
    run = loop_store.start_run(conn, {"max_cycles": max_cycles})
    loop_store.start_cycle(conn, run, 1, "alpha")
    loop_store.save_progress(conn, run, cycle=1, runtime_s=0.0, repo="alpha")
    loop_store.start_step(conn, run, 1, 0, STEPS[0])
    return run


def advance(conn: sqlite3.Connection, run: int, done: int) -> tuple[int, str]:
    """End the running step of the run's `done`-th step overall and start the next one
    (a new cycle after the eighth); the (cycle, step) now running."""
    cycle, position = divmod(done, len(STEPS))
    loop_store.end_step(
        conn, run, cycle + 1, position, status="done", reason=None, counts={"n": done}, outputs={}
    )
    cycle, position = divmod(done + 1, len(STEPS))
    if position == 0:
        loop_store.end_cycle(conn, run, cycle, status="done", promoted=0, summary={})
        loop_store.start_cycle(conn, run, cycle + 1, "alpha")
        loop_store.save_progress(conn, run, cycle=cycle + 1, runtime_s=0.0, repo="alpha")
    loop_store.start_step(conn, run, cycle + 1, position, STEPS[position])
    return cycle + 1, STEPS[position]


def harness_run(conn: sqlite3.Connection) -> int:
    """A `validate` run recorded and closed on the first repository; its id."""
    first = repo_id(conn, repo_names(conn)[0])
    if first is None:
        raise RuntimeError("no repository recorded")
    run = start_run(conn, first, "validate", "{}", now())
    finish_run(conn, run, "finished", None, now())
    return run


def now() -> str:
    """The time now, as the stores record it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def start_writer(root: Path, seconds: float, pause: float = 0.0) -> subprocess.Popen[str]:
    """This module as the writer process (see the module doc)."""
    argv = [sys.executable, "-m", "tests.dashboard.helpers", str(root), str(seconds), str(pause)]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )


def writer(root: Path, seconds: float, pause: float) -> dict[str, int]:
    """Advance the workspace's running loop and record harness runs until `seconds`
    have passed, `pause` seconds between writes; the writes and the lock errors."""
    workspace = open_workspace(root)
    writes = locked = 0
    deadline = time.monotonic() + seconds
    with closing(workspace.raw_db()) as conn:
        run = loop_store.latest_run(conn)
        done = 0 if run is None else len(loop_store.steps(conn, run.id)) - 1
        run_id = start_loop(conn) if run is None else run.id
        while time.monotonic() < deadline:
            try:
                advance(conn, run_id, done)
                harness_run(conn)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                locked += 1
            else:
                done += 1
                writes += 1
            time.sleep(pause)
    return {"writes": writes, "locked": locked, "steps": done}


def poll_while(
    url: str, stop: threading.Event, seen: list[dict[str, Any]], errors: list[str]
) -> None:
    """Ask `/api/data` as fast as it answers until `stop`; keep what it said."""
    while not stop.is_set():
        try:
            seen.append(data(url, "?since=0"))
        except (AssertionError, OSError) as exc:
            errors.append(str(exc))


def dump_live_page(
    binary: str, url: str, tmp: Path, budget_ms: int
) -> subprocess.CompletedProcess[str]:
    """Headless chromium on the live page (`--dump-dom` after `budget_ms` of virtual
    time; it waits while a request is open), HOME and profile in `tmp`."""
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-proxy-server",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)


if __name__ == "__main__":
    result = writer(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
    print(json.dumps(result))
