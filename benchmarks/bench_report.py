"""Report and dashboard benchmark: 10,000 tasks and 50 adapter versions.

Writes a workspace through cra's writers (the synthetic log: 6 repositories, 10,000 tasks
with their plans, retrievals, model calls and verdicts; 50 versions of one adapter
registered on a stand-in base model directory, 40 training steps each, and a running loop),
then times, in the same run:
- the baseline: one read-only `SELECT count(*)` pass over every table the report reads;
- `cra report` end to end (a child process: import, read, render, write);
- `cra dashboard`'s `/api/data` (a child process) while another process records loop
  steps and harness runs as fast as it can: every answer's time, with the views (the
  page's first request) and without (every later poll), p50 and p95.
Prints the figures, their ratios to the targets (report < 10 s, data p95 < 200 ms) and to
the baseline. Usage: python benchmarks/bench_report.py [TASKS] [SECONDS]
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path

from cra.adapters.registry import Registration, register
from cra.db import loop as loop_store
from cra.db.connection import table_names, transaction
from cra.db.runs import finish_run, start_run
from cra.db.train_steps import TrainStep, record_step, set_run_version
from cra.fixtures.logs import DEFAULT_REPOS, build_synthetic_log
from cra.workspace import Workspace, init_workspace, open_workspace

REPORT_TARGET_S = 10.0
DATA_P95_TARGET_S = 0.2
VERSIONS = 50
STEPS = ("ingest", "harness", "plan", "curate", "train", "evaluate", "promote", "check")


def build(workspace: Workspace, tasks: int) -> None:
    """The synthetic log, 50 registered versions with their loss curves, a running loop."""
    with closing(workspace.raw_db()) as conn:
        build_synthetic_log(conn, tasks_per_repo=max(1, tasks // len(DEFAULT_REPOS)))
    base = workspace.root / "stand-in-base"  # a model directory as the registry hashes it
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "stand-in"}')
    (base / "model.safetensors").write_bytes(b"\0" * 1024)
    for number in range(1, VERSIONS + 1):
        run_id = f"scope-run{number}"
        with closing(workspace.raw_db()) as conn:
            for step in range(1, 41):
                row = TrainStep(run_id, "scope", "sft", step, loss=2.0 / step + number / 100)
                record_step(conn, row, "2026-01-01T00:00:00+00:00")
        staged = workspace.root / f"staged-{number}"
        staged.mkdir()
        (staged / "adapter_config.json").write_text('{"r": 4}')
        (staged / "adapter_model.safetensors").write_bytes(number.to_bytes(2, "big") * 64)
        metrics = {"seconds": 1.5, "steps": 40}
        version = register(workspace, Registration("scope", staged, base, None, "sft", {}, metrics))
        with closing(workspace.raw_db()) as conn, transaction(conn):
            set_run_version(conn, run_id, version.version)
    with closing(workspace.raw_db()) as conn:
        run = loop_store.start_run(conn, {"max_cycles": 1000})
        loop_store.start_cycle(conn, run, 1, None)
        loop_store.start_step(conn, run, 1, 0, STEPS[0])


def baseline(workspace: Workspace) -> tuple[float, int]:
    """Seconds for one read-only count(*) over every table of raw.db, and the rows."""
    started = time.perf_counter()
    uri = f"{workspace.raw_db_path.as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = sum(
            int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            for name in sorted(table_names(conn))
        )
    return time.perf_counter() - started, rows


def cra(root: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    """`cra -w ROOT ARGS` in a child process."""
    argv = [sys.executable, "-m", "cra", "-w", str(root), *args]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )  # type: ignore[call-overload]


def writer(root: Path, seconds: float) -> None:
    """Record loop steps and harness runs as fast as possible for `seconds`; print how many
    writes and how many hit a locked database."""
    workspace = open_workspace(root)
    writes = locked = 0
    deadline = time.monotonic() + seconds
    with closing(workspace.raw_db()) as conn:
        run = loop_store.latest_run(conn)
        if run is None:
            raise RuntimeError("no loop run to advance")
        done = 0
        while time.monotonic() < deadline:
            cycle, position = divmod(done, len(STEPS))
            try:
                loop_store.end_step(
                    conn,
                    run.id,
                    cycle + 1,
                    position,
                    status="done",
                    reason=None,
                    counts={},
                    outputs={},
                )
                cycle, position = divmod(done + 1, len(STEPS))
                if position == 0:
                    loop_store.start_cycle(conn, run.id, cycle + 1, None)
                loop_store.start_step(conn, run.id, cycle + 1, position, STEPS[position])
                harness = start_run(conn, 1, "validate", "{}", "2026-01-01T00:00:00+00:00")
                finish_run(conn, harness, "finished", None, "2026-01-01T00:00:01+00:00")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                locked += 1
            else:
                done += 1
                writes += 1
    print(json.dumps({"writes": writes, "locked": locked}))


def fetch(url: str) -> tuple[float, dict[str, object]]:
    """Seconds for one GET of `url` and its JSON."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.perf_counter()
    with opener.open(url, timeout=30) as response:
        body = json.loads(response.read())
    return time.perf_counter() - started, body


def measure_dashboard(root: Path, seconds: float) -> dict[str, object]:
    """`/api/data` times while the writer runs: with views, and a poll's."""
    dash = cra(root, "dashboard", "--port", "0", "--json")
    url = json.loads(dash.stdout.readline())["url"]  # type: ignore[union-attr]
    full: list[float] = []
    polls: list[float] = []
    errors = 0
    write = subprocess.Popen(
        [sys.executable, __file__, "--writer", str(root), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        took, body = fetch(f"{url}api/data")
        full.append(took)
        errors += body["error"] is not None
        for _ in range(9):
            since, token = body["views_version"], body["live_token"]
            took, body = fetch(f"{url}api/data?since={since}&live={token}")
            polls.append(took)
            errors += body["error"] is not None
    out, _ = write.communicate(timeout=120)
    dash.terminate()
    dash.communicate(timeout=30)
    return {"full": full, "polls": polls, "errors": errors, "writer": json.loads(out)}


def p(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    with tempfile.TemporaryDirectory() as tmp:
        workspace = init_workspace(Path(tmp) / "ws").workspace
        started = time.perf_counter()
        build(workspace, tasks)
        print(
            f"workspace: {tasks} tasks, {VERSIONS} versions"
            f" in {time.perf_counter() - started:.1f} s"
        )
        base_s, rows = baseline(workspace)
        print(f"baseline count(*) over every table: {base_s * 1000:.1f} ms ({rows} rows)")
        started = time.perf_counter()
        report = cra(workspace.root, "report", "--json")
        out, err = report.communicate(timeout=600)
        report_s = time.perf_counter() - started
        if report.returncode != 0:
            raise SystemExit(f"cra report failed: {err}")
        size = json.loads(out)["bytes"]
        print(
            f"cra report: {report_s:.2f} s ({size / 2**20:.1f} MiB),"
            f" target {REPORT_TARGET_S:.0f} s:"
            f" {report_s / REPORT_TARGET_S:.2f} of target, {report_s / base_s:.0f}x baseline"
        )
        got = measure_dashboard(workspace.root, seconds)
        full, polls = got["full"], got["polls"]
        assert isinstance(full, list) and isinstance(polls, list)
        for name, values in (("with views", full), ("poll", polls)):
            p95 = p(values, 0.95)
            print(
                f"/api/data {name}: {len(values)} requests, p50 {p(values, 0.5) * 1000:.1f} ms,"
                f" p95 {p95 * 1000:.1f} ms; target {DATA_P95_TARGET_S * 1000:.0f} ms:"
                f" {p95 / DATA_P95_TARGET_S:.2f} of target, {p95 / base_s:.1f}x baseline"
            )
        print(f"writer: {got['writer']}; answers with an error: {got['errors']}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(Path(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
