"""Real `cra loop` processes: kill -9 during a step and resume, the STOP file, signals,
`cra loop stop`, and one loop per workspace."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.helpers import run_cra
from tests.loop.helpers import recorded, running_step
from tests.workspace_helpers import cra_popen, wait_for

ENDLESS = ("--max-cycles", "100000", "--patience", "10000", "--max-failed-cycles", "5")
"""Limits under which a loop on an empty workspace runs until it is stopped."""


def _journal_holds(workspace) -> bool:
    result = run_cra(workspace, "loop", "verify", "--json")
    return result.returncode == 0 and json.loads(result.stdout)["broken"] is None


def test_kill_9_during_a_step_then_resume_carries_everything_over(packed, workspace) -> None:
    """A `cra loop start` killed with SIGKILL in its harness step is resumed at that step
    of the same cycle, with runtime carried over, and ends as an uninterrupted run would:
    every step of the cycle ended, the run ended on max_cycles, the journal valid."""
    proc = cra_popen(workspace.root, "loop", "start", "--max-cycles", "1", "--tasks-per-cycle", "2")
    wait_for(lambda: running_step(workspace, "harness"), timeout=120)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    crashed = recorded(workspace)
    assert crashed.run.status == "running" and crashed.run.cycle == 1
    assert [(s.step, s.status) for s in crashed.steps] == [
        ("ingest", "done"),
        ("harness", "running"),
    ]
    refused = run_cra(workspace, "loop", "start")
    assert refused.returncode == 2 and "cra loop resume" in refused.stderr
    assert _journal_holds(workspace)

    result = run_cra(workspace, "loop", "resume", timeout=300)
    assert result.returncode == 2, result.stderr
    final = recorded(workspace)
    assert (final.run.id, final.run.stop_reason) == (crashed.run.id, "max_cycles")
    assert [c.number for c in final.cycles] == [1]
    ended = [(s.step, s.status) for s in final.steps if s.status != "interrupted"]
    assert [name for name, _ in ended] == [
        "ingest",
        "harness",
        "plan",
        "curate",
        "train",
        "evaluate",
        "promote",
        "check",
    ]
    assert ("harness", "interrupted") in [(s.step, s.status) for s in final.steps]
    assert final.run.runtime_s >= crashed.run.runtime_s
    kinds = [e.kind for e in final.events]
    assert "step_interrupted" in kinds and "resumed" in kinds and kinds[-1] == "ended"
    assert _journal_holds(workspace)


def test_the_stop_file_ends_a_running_loop_within_10_s(workspace) -> None:
    """A STOP file in the workspace ends `cra loop start` within 10 s with exit 3."""
    proc = cra_popen(workspace.root, "loop", "start", *ENDLESS)
    wait_for(lambda: workspace.raw_db_path.exists() and running_step(workspace, "plan"), timeout=60)
    workspace.stop_path.touch()
    started = time.monotonic()
    proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 3
    rec = recorded(workspace)
    assert rec.run.stop_reason == "kill_switch" and rec.run.status == "ended"
    assert _journal_holds(workspace)


def test_sigterm_ends_the_loop_with_130_and_consistent_stores(workspace) -> None:
    """SIGTERM ends the loop (exit 130), recording the run as interrupted; no step is
    left running."""
    proc = cra_popen(workspace.root, "loop", "start", *ENDLESS)
    wait_for(
        lambda: workspace.raw_db_path.exists() and running_step(workspace, "ingest"), timeout=60
    )
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    rec = recorded(workspace)
    assert rec.run.stop_reason == "interrupted"
    assert not [s for s in rec.steps if s.status == "running"]
    assert _journal_holds(workspace)


def test_one_loop_per_workspace_and_a_dead_holder_frees_it(workspace) -> None:
    """A second `loop start` is refused while one runs; once the holder died, `loop
    resume` takes over, and `cra loop stop` ends it (exit 0)."""
    first = cra_popen(workspace.root, "loop", "start", *ENDLESS)
    wait_for(
        lambda: workspace.raw_db_path.exists() and running_step(workspace, "ingest"), timeout=60
    )
    second = run_cra(workspace, "loop", "start")
    assert second.returncode == 1
    assert (
        f"a loop already runs in this workspace: cra loop start (pid {first.pid}" in second.stderr
    )
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    taker = cra_popen(workspace.root, "loop", "resume")
    wait_for(lambda: "resumed" in [e.kind for e in recorded(workspace).events], timeout=60)
    stopped = run_cra(workspace, "loop", "stop")
    assert stopped.returncode == 0 and "asked loop run 1 to stop" in stopped.stdout
    taker.communicate(timeout=30)
    assert taker.returncode == 0
    status = json.loads(run_cra(workspace, "loop", "status", "--json").stdout)
    assert status["run"]["stop_reason"] == "stop_requested"
    assert status["run"]["status"] == "ended"
    assert _journal_holds(workspace)
