"""`run_harness` end to end with the baseline planner on the factory history.

Commit rows are written here the way mining records qualifying commits.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from cra.db import transaction
from cra.errors import NotFound
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness
from cra.harness.testpaths import is_test_path
from cra.repos.layout import register_repo


def _package(workspace, project_repo) -> None:
    target = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(target)], check=True)


def _git(cwd, *args: str) -> str:
    """The stdout of `git ARGS...` run in CWD (failing the test if git fails)."""
    proc = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return proc.stdout


def _record_qualified(workspace, project_repo) -> list:
    conn = workspace.raw_db()
    repo_id = register_repo(conn, "tally")
    qualified = [c for c in project_repo.commits if c.expected_stage == "qualified"]
    with transaction(conn):
        for c in qualified:
            diff_tree = [
                "diff-tree",
                "--no-commit-id",
                "--name-only",
                "-r",
                "-M",
                f"{c.sha}^",
                c.sha,
            ]
            names = _git(project_repo.path, *diff_tree).split()
            parent = _git(project_repo.path, "rev-parse", f"{c.sha}^").strip()
            py = [n for n in names if n.endswith(".py")]
            conn.execute(
                "INSERT INTO commits (repo_id, sha, parent_sha, authored_at, authored_ts, "
                "subject, task_text, files_source, files_tests, verdict, stage, mined_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'qualified', 'qualified', 'now')",
                (
                    repo_id,
                    c.sha,
                    parent,
                    c.authored_at.isoformat(),
                    int(c.authored_at.timestamp()),
                    c.subject,
                    c.subject,
                    json.dumps([n for n in py if not is_test_path(n)]),
                    json.dumps([n for n in py if is_test_path(n)]),
                ),
            )
    conn.close()
    return qualified


def test_unmined_repository_says_to_mine(workspace, project_repo) -> None:
    """Running on an unmined repository fails with a hint to run the mine command."""
    _package(workspace, project_repo)
    with pytest.raises(NotFound, match="not been mined") as info:
        run_harness(workspace, "tally", RunOptions())
    assert "cra harness mine --repo tally" in (info.value.hint or "")


def test_baseline_run_scores_every_task_and_resumes(workspace, project_repo) -> None:
    """A baseline run scores one plan per task, leaves no worktree, and a rerun skips them all."""
    _package(workspace, project_repo)
    qualified = _record_qualified(workspace, project_repo)
    summary = run_harness(workspace, "tally", RunOptions())
    assert summary.tasks_done == len(qualified)
    assert summary.plans == len(qualified)
    assert summary.invalid_plans == 0
    conn = workspace.raw_db()
    rows = conn.execute(
        "SELECT t.task_text, t.gold_files, t.gold_symbols, s.alignment, s.file_recall "
        "FROM plans p JOIN tasks t USING (task_id) JOIN plan_scores s ON s.plan_id = p.id"
    ).fetchall()
    assert len(rows) == len(qualified)
    assert all(0.0 <= r["alignment"] <= 1.0 for r in rows)
    fix = next(r for r in rows if r["task_text"].startswith("Fix ZeroDivisionError"))
    assert json.loads(fix["gold_files"]) == [{"path": "src/tally/stats.py", "old_path": None}]
    assert json.loads(fix["gold_symbols"]) == [
        {"path": "src/tally/stats.py", "qualname": "mean", "change": "modified"}
    ]
    assert fix["file_recall"] == 1.0
    rename = next(r for r in rows if r["task_text"].startswith("Rename utils"))
    assert json.loads(rename["gold_files"])[0]["old_path"] == "src/tally/utils.py"
    retrievals = conn.execute("SELECT count(*) FROM retrievals").fetchone()[0]
    assert retrievals == len(qualified)
    # No worktree is left behind.
    assert not any((workspace.harness_dir / "worktrees").iterdir())
    again = run_harness(workspace, "tally", RunOptions())
    assert (again.tasks_done, again.tasks_skipped) == (0, len(qualified))
    assert conn.execute("SELECT count(*) FROM plans").fetchone()[0] == len(qualified)
    # The rerun had nothing to do: it recorded no run.
    assert (again.run_id, again.tasks_total) == (None, len(qualified))
    runs = conn.execute("SELECT status FROM harness_runs ORDER BY id").fetchall()
    assert [r[0] for r in runs] == ["finished"]


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from cra.workspace import open_workspace
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness

def slow(done, total, last):
    print(done, flush=True)
    time.sleep(0.3)

run_harness(open_workspace(Path(sys.argv[1])), "tally", RunOptions(), progress=slow)
"""


def _rows(conn) -> list[tuple]:
    """The recorded content of a run, without ids, run ids and times."""
    return conn.execute(
        "SELECT p.task_id, t.gold_files, t.gold_symbols, r.results, p.planner, p.valid, "
        "p.plan, s.file_f1, s.symbol_f1, s.order_score, s.alignment "
        "FROM plans p JOIN tasks t USING (task_id) JOIN plan_scores s ON s.plan_id = p.id "
        "JOIN retrievals r ON r.task_id = p.task_id ORDER BY p.task_id"
    ).fetchall()


def test_sigkill_then_resume_gives_the_rows_of_an_uninterrupted_run(
    workspace, project_repo, tmp_path
) -> None:
    """A run killed midway keeps whole tasks only, and resuming matches an uninterrupted run."""
    import os
    import signal
    import sys

    from cra.workspace import init_workspace

    _package(workspace, project_repo)
    qualified = _record_qualified(workspace, project_repo)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(workspace.root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    seen = 0
    for line in proc.stdout:
        seen = int(line)
        if seen >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    conn = workspace.raw_db()
    partial = conn.execute("SELECT count(*) FROM plans").fetchone()[0]
    assert 0 < partial < len(qualified)
    # Every task recorded so far is whole: a plan has its score and its retrieval.
    assert (
        conn.execute(
            "SELECT count(*) FROM plans p LEFT JOIN plan_scores s ON s.plan_id = p.id "
            "WHERE s.plan_id IS NULL"
        ).fetchone()[0]
        == 0
    )
    resumed = run_harness(workspace, "tally", RunOptions())
    assert resumed.tasks_skipped == partial
    other = init_workspace(tmp_path / "clean").workspace
    _package(other, project_repo)
    _record_qualified(other, project_repo)
    run_harness(other, "tally", RunOptions())
    assert [tuple(r) for r in _rows(conn)] == [tuple(r) for r in _rows(other.raw_db())]


def test_unreachable_endpoint_fails_before_the_run_starts(workspace, project_repo) -> None:
    """An unreachable model endpoint fails the run before any run or plan row is written."""
    from cra.llm.client import EndpointUnreachable
    from cra.serving.process import free_port
    from cra.workspace import open_workspace

    (workspace.root / "cra.toml").write_text(
        f'[llm]\nendpoint = "http://127.0.0.1:{free_port()}/v1"\n'
    )
    ws = open_workspace(workspace.root)
    _package(ws, project_repo)
    _record_qualified(ws, project_repo)
    with pytest.raises(EndpointUnreachable, match="unreachable"):
        run_harness(ws, "tally", RunOptions(planner="llm", temperatures=(0.2, 0.7)))
    conn = ws.raw_db()
    assert conn.execute("SELECT count(*) FROM harness_runs").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM plans").fetchone()[0] == 0
