"""Real `cra loop start` processes killed with SIGKILL in each step and resumed, ending
as an uninterrupted loop on a copy of the workspace does; the STOP file during training."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest

from cra.db.llm_calls import record_call
from cra.fsutil import now_iso
from cra.loop.report import loop_status
from cra.workspace import Workspace
from tests.helpers import run_cra
from tests.loop.helpers import (
    active_versions,
    copy_workspace,
    kill_9_paused,
    loop_paused_in_step,
    ranker_loop_workspace,
    recorded,
    registered_versions,
    running_step,
)
from tests.workspace_helpers import cra_popen, wait_for

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")

ONE_CYCLE = ("--max-cycles", "1", "--tasks-per-cycle", "0")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder the ranker trains from (built once)."""
    from cra.fixtures.ranker import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny")


def _journal_holds(workspace: Workspace) -> bool:
    result = run_cra(workspace, "loop", "verify", "--json")
    return result.returncode == 0 and json.loads(result.stdout)["broken"] is None


def _loop_workspace(step: str, request: pytest.FixtureRequest, encoder: Path) -> Workspace:
    if step == "ingest":
        request.getfixturevalue("packed")
        return request.getfixturevalue("workspace")
    epochs = 2 if step == "train" else 1  # training long enough to be caught, else short
    return ranker_loop_workspace(request.getfixturevalue("workspace"), encoder, epochs)


QUICK = ("promote", "check")
"""Steps too quick to be caught by polling: the loop pauses once such a step has done its
work, before it returns (see loop_paused_in_step), and is killed there."""


@pytest.mark.parametrize("step", ["ingest", "train", "evaluate", "promote", "check"])
def test_kill_9_in_a_step_then_resume_ends_as_an_uninterrupted_loop(
    step: str, request: pytest.FixtureRequest, encoder: Path, tmp_path: Path
) -> None:
    """SIGKILL while `step` runs (for a quick step, once it has done its work), then
    `cra loop resume`: the step re-runs in the same cycle, runtime carries over, the
    journal holds, and the registry's active versions equal those of an uninterrupted
    loop on a copy of the workspace."""
    workspace = _loop_workspace(step, request, encoder)
    twin = copy_workspace(workspace, tmp_path / "twin")
    if step in QUICK:
        proc = loop_paused_in_step(workspace.root, step, *ONE_CYCLE)
        kill_9_paused(proc, workspace, step)
    else:
        proc = cra_popen(workspace.root, "loop", "start", *ONE_CYCLE)
        wait_for(lambda: running_step(workspace, step), timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    crashed = recorded(workspace)
    assert (crashed.run.status, crashed.run.cycle) == ("running", 1)
    assert (crashed.steps[-1].step, crashed.steps[-1].status) == (step, "running")

    result = run_cra(workspace, "loop", "resume", timeout=300)
    assert result.returncode == 2, result.stderr
    final = recorded(workspace)
    assert (final.run.id, final.run.stop_reason) == (crashed.run.id, "max_cycles")
    assert [c.number for c in final.cycles] == [1]
    runs = [s.status for s in final.steps if s.step == step]
    assert runs[0] == "interrupted" and runs[-1] in ("done", "skipped") and len(runs) == 2
    assert final.run.runtime_s >= crashed.run.runtime_s
    assert final.cycles[0].summary == _uninterrupted(twin)["summary"]
    assert active_versions(workspace) == _uninterrupted(twin)["active"]
    assert _journal_holds(workspace)


def _uninterrupted(twin: Workspace, cache: dict[str, dict] = {}) -> dict:  # noqa: B006
    key = str(twin.root)
    if key not in cache:
        result = run_cra(twin, "loop", "start", *ONE_CYCLE, timeout=300)
        assert result.returncode == 2, result.stderr
        cache[key] = {"summary": recorded(twin).cycles[0].summary, "active": active_versions(twin)}
    return cache[key]


def test_the_stop_file_during_training_ends_the_loop_within_10_s(workspace, encoder) -> None:
    """A STOP file while the ranker trains ends `cra loop start` within 10 s with exit 3,
    the train step recorded as cut and no half-registered version."""
    ws = ranker_loop_workspace(workspace, encoder, 40)
    proc = cra_popen(ws.root, "loop", "start", *ONE_CYCLE)
    wait_for(lambda: running_step(ws, "train"), timeout=120)
    time.sleep(1.0)
    ws.stop_path.touch()
    started = time.monotonic()
    proc.communicate(timeout=60)
    assert time.monotonic() - started < 10
    assert proc.returncode == 3
    rec = recorded(ws)
    assert (rec.run.stop_reason, rec.run.status) == ("kill_switch", "ended")
    train = [s for s in rec.steps if s.step == "train"]
    assert [s.status for s in train] == ["cut"]
    rows, folders = registered_versions(ws)
    assert rows == folders
    assert _journal_holds(ws)


def test_kill_9_then_resume_carries_the_cycles_tokens_and_runtime_over(workspace, encoder) -> None:
    """Tokens recorded in `llm_calls` during a cycle and the runtime used before a SIGKILL
    are carried over by `cra loop resume`, never reset: the cycle ends with those tokens,
    and the run's runtime is what the killed process recorded plus what the resumed one
    ran, the seconds while no loop process ran not counted."""
    ws = ranker_loop_workspace(workspace, encoder, 2)
    proc = cra_popen(ws.root, "loop", "start", *ONE_CYCLE)
    wait_for(lambda: running_step(ws, "train"), timeout=120)
    with closing(ws.raw_db()) as conn:
        record_call(
            conn,
            {
                "stage": "plan",
                "model": "teacher",
                "messages": "[]",
                "prompt_tokens": 300,
                "completion_tokens": 45,
                "created_at": now_iso(),
            },
        )
    wait_for(lambda: recorded(ws).run.runtime_s >= 4.0, timeout=60)  # a heartbeat in train
    assert running_step(ws, "train")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    crashed = recorded(ws)
    status = loop_status(ws)
    assert status is not None
    assert {b.name: b.used for b in status.budgets}["cycle_tokens"] == 345
    time.sleep(3.0)  # no loop process runs: not counted

    started = time.monotonic()
    result = run_cra(ws, "loop", "resume", timeout=300)
    wall = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    final = recorded(ws)
    assert (final.run.id, final.run.cycle, [c.number for c in final.cycles]) == (
        crashed.run.id,
        1,
        [1],
    )
    assert final.cycles[0].tokens == 345
    resumed = next(e for e in final.events if e.kind == "resumed")
    assert resumed.payload["runtime_s"] == crashed.run.runtime_s
    ran = sum(
        (datetime.fromisoformat(s.ended_at) - datetime.fromisoformat(s.started_at)).total_seconds()
        for s in final.steps[len(crashed.steps) :]
        if s.ended_at
    )
    assert crashed.run.runtime_s + ran <= final.run.runtime_s <= crashed.run.runtime_s + wall
    assert final.cycles[0].runtime_s >= crashed.cycles[0].runtime_s + ran
