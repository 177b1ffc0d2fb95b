"""Helpers of the loop tests: limits, steps that take real time, and reading the loop's
tables through their store."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.adapters.registry import Event, active_version, adapter_names, events, list_versions
from cra.db import loop as store
from cra.db.llm_calls import record_call
from cra.fixtures.ranker import build_ranker_history
from cra.fsutil import now_iso
from cra.loop.limits import Limits, parse_target
from cra.loop.steps import FunctionStep, StepContext, StepResult
from cra.ranker.train import RankerTrainOptions, train_ranker
from cra.repos.pack import PackOptions, pack
from cra.workspace import Workspace, open_workspace
from tests.adapters.helpers import candidate, planted_eval
from tests.workspace_helpers import cra_popen, wait_for


def limits(**changed: Any) -> Limits:
    """Small limits for the engine's tests, with `changed` applied."""
    values: dict[str, Any] = {
        "max_cycles": 5,
        "patience": 2,
        "cycle_timeout_s": 60.0,
        "max_hours": 1.0,
        "min_hours": 0.0,
        "tokens_per_cycle": 1000,
        "tasks_per_cycle": 2,
        "max_failed_cycles": 2,
        "meta_every": 2,
        "targets": (),
        "widen_every": 0,
    }
    values.update(changed)
    values["targets"] = tuple(parse_target(t) for t in values["targets"])
    return Limits(**values)


def pack_copy(workspace: Workspace, source: Path, wheelhouse: Path, name: str) -> None:
    """Pack the git repository at `source` into `workspace` as package `name`, from the
    local wheelhouse."""
    pack(workspace, str(source), PackOptions(name=name, find_links=wheelhouse))


def slow_step(name: str, units: int, unit_s: float = 0.1) -> FunctionStep:
    """A step that works `units` units of `unit_s` seconds, with a safe point after each,
    and counts how many it finished."""

    def run(ctx: StepContext) -> StepResult:
        for done in range(units):
            time.sleep(unit_s)
            ctx.checkpoint()
            (ctx.workspace.root / f"{name}.units").write_text(str(done + 1))
        return StepResult("done", None, {"units": units})

    return FunctionStep(name, run)


def failing_step(name: str) -> FunctionStep:
    """A step that always breaks with an unexpected error."""

    def run(_ctx: StepContext) -> StepResult:
        raise RuntimeError("broken on purpose")

    return FunctionStep(name, run)


@dataclass(frozen=True)
class Recorded:
    """What the loop tables hold about one run."""

    run: store.LoopRun
    cycles: list[store.LoopCycle]
    steps: list[store.LoopStep]
    events: list[store.LoopEvent]


def recorded(workspace: Workspace, run_id: int | None = None) -> Recorded:
    """The latest run (or `run_id`) with its cycles, steps and events."""
    with closing(workspace.raw_db()) as conn:
        run = store.get_run(conn, run_id) if run_id else store.latest_run(conn)
        assert run is not None
        return Recorded(
            run, store.cycles(conn, run.id), store.steps(conn, run.id), store.events(conn, run.id)
        )


def running_step(workspace: Workspace, name: str) -> bool:
    """Whether the latest run has step `name` running now."""
    if not workspace.raw_db_path.exists():
        return False
    with closing(workspace.raw_db()) as conn:
        run = store.latest_run(conn)
        if run is None:
            return False
        return any(s.step == name and s.status == "running" for s in store.steps(conn, run.id))


def token_step(name: str, tokens: int) -> FunctionStep:
    """A step that records one LLM call of `tokens` prompt tokens in `llm_calls`."""

    def run(ctx: StepContext) -> StepResult:
        row = {
            "stage": "plan",
            "model": "teacher",
            "messages": "[]",
            "prompt_tokens": tokens,
            "completion_tokens": 0,
            "created_at": now_iso(),
        }
        with closing(ctx.workspace.raw_db()) as conn:
            record_call(conn, row)
        return StepResult("done", None, {"tokens": tokens})

    return FunctionStep(name, run)


def candidate_step(recalls: list[list[float]], tmp: Path) -> FunctionStep:
    """A train+evaluate stand-in that registers a real random-weight adapter `scope` per
    cycle with planted eval results: cycle N gets the per-example recalls `recalls[N-1]`."""

    def run(ctx: StepContext) -> StepResult:
        number = candidate(ctx.workspace, tmp, seed=ctx.cycle)
        planted_eval(ctx.workspace, number, recalls[ctx.cycle - 1])
        return StepResult("done", None, {"candidates": 1}, {"candidates": f"scope@v{number}"})

    return FunctionStep("candidate", run)


def ranker_loop_workspace(
    workspace: Workspace, encoder: Path, epochs: float, extra: str = ""
) -> Workspace:
    """`workspace` training the ranker from the tiny `encoder` for `epochs` on a synthetic
    mined history (no package: ingest and harness skip, train/evaluate/promote run)."""
    (workspace.root / "cra.toml").write_text(
        f'[ranker]\nbase = "{encoder}"\nepochs = {epochs}\nbatch_size = 8\n'
        f"learning_rate = 0.001\n{extra}"
    )
    workspace = open_workspace(workspace.root)
    build_ranker_history(workspace, commits=60)
    return workspace


def active_versions(workspace: Workspace) -> dict[str, int | None]:
    """The active version of each adapter in the registry (None: none is active)."""
    with closing(workspace.raw_db()) as conn:
        return {
            name: getattr(active_version(conn, workspace.root, name), "version", None)
            for name in adapter_names(conn)
        }


def registry_events(workspace: Workspace, name: str) -> list[Event]:
    """The registry's history of adapter `name`, oldest first."""
    with closing(workspace.raw_db()) as conn:
        return events(conn, name)


def registered_versions(workspace: Workspace) -> tuple[set[str], set[str]]:
    """(refs in `adapter_versions`, `NAME@vN` folders under the workspace's adapters/)."""
    with closing(workspace.raw_db()) as conn:
        rows = {v.ref for v in list_versions(conn, workspace.root)}
    folder = workspace.adapters_dir
    found = {f"{d.name}@{v.name}" for d in folder.glob("*") for v in d.glob("*")}
    return rows, found


def cycle_record(
    number: int,
    *,
    repo: str | None = None,
    candidates: tuple[str, ...] = (),
    promoted: tuple[str, ...] = (),
    improved: tuple[str, ...] | None = None,
    new_commits: int | None = None,
    new_tasks: int | None = None,
) -> store.LoopCycle:
    """A finished cycle as the loop records it, with these refs and counts in its summary
    (`improved` defaults to `promoted`)."""
    summary = {
        "candidates": list(candidates),
        "promoted": list(promoted),
        "improved": list(promoted if improved is None else improved),
        "new_commits": new_commits,
        "new_tasks": new_tasks,
    }
    return store.LoopCycle(
        1, number, repo, "done", 1.0, 0, len(promoted), summary, now_iso(), now_iso()
    )


def copy_workspace(workspace: Workspace, target: Path) -> Workspace:
    """A copy of `workspace` at `target`, its databases copied through SQLite's backup API
    (a consistent snapshot even while a process writes them, which copying a database
    file and its -wal file one after the other is not)."""
    databases = {workspace.raw_db_path.name, workspace.curated_db_path.name}

    def left_out(folder: str, names: list[str]) -> set[str]:
        if Path(folder) != workspace.db_dir:
            return set()
        return {n for n in names if n.split("-")[0] in databases}

    shutil.copytree(workspace.root, target, symlinks=True, ignore=left_out)
    for name in databases:
        source = sqlite3.connect(f"{(workspace.db_dir / name).as_uri()}?mode=ro", uri=True)
        with closing(source), closing(sqlite3.connect(target / "db" / name)) as copy:
            source.backup(copy)
    return open_workspace(target)


PAUSE_HOOK = Path(__file__).parent / "pause"
"""The folder of the `sitecustomize` that pauses a loop process in a step (see there)."""


def _pause_marker(root: Path, step: str) -> Path:
    """The file a loop paused in `step` creates in workspace `root`."""
    return root / f"paused-in-{step}"


def loop_paused_in_step(root: Path, step: str, *args: str) -> subprocess.Popen[str]:
    """`cra loop start ARGS...` on workspace `root` that pauses once step `step` has done
    its work, before it returns (see `pause/sitecustomize.py`); `kill_9_paused` ends it."""
    marker = _pause_marker(root, step)
    env = {
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(PAUSE_HOOK), os.environ.get("PYTHONPATH")) if p
        ),
        "CRA_PAUSE_STEP": step,
        "CRA_PAUSE_FILE": str(marker),
    }
    return cra_popen(root, "loop", "start", *args, env=env)


def kill_9_paused(proc: subprocess.Popen[str], workspace: Workspace, step: str) -> None:
    """SIGKILL the loop `proc` (from `loop_paused_in_step`) once `step` has done its work
    and waits, still recorded as running."""
    marker = _pause_marker(workspace.root, step)
    wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=300)
    assert proc.poll() is None, f"the loop ended before {step} paused: {proc.communicate()}"
    assert running_step(workspace, step)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    marker.unlink()


def seeded_ranker_step(seeds: list[int]) -> FunctionStep:
    """A train step that trains the ranker on the mined history exactly as configured,
    except `[ranker] seed`: cycle N trains with `seeds[N-1]`."""

    def run(ctx: StepContext) -> StepResult:
        config = ctx.workspace.root / "cra.toml"
        seed = f"seed = {seeds[ctx.cycle - 1]}\n"
        text = config.read_text()
        config.write_text(text.replace("[ranker]\n", f"[ranker]\n{seed}"))
        try:
            result = train_ranker(open_workspace(ctx.workspace.root), RankerTrainOptions())
        finally:
            config.write_text(text)
        ref = result.version.ref
        return StepResult("done", None, {"candidates": 1}, {"candidates": ref})

    return FunctionStep("train", run)
