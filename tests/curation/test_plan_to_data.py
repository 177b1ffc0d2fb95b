"""From plan to dataset without friction: what a short plan says it needs, why execute
rows are missing, the default plan of curate-data, and why a second dataset is empty."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.curation.candidates import NOT_VALIDATED, NOT_VERIFIED, build_candidates
from cra.curation.curate import PlanError, curate, newest_plan
from cra.curation.plan import NotEnoughData, build_plan, curate_options, write_plan
from cra.db import transaction
from cra.db.logs import LogAnalysis
from cra.db.outcomes import OutcomeRow, record_outcome
from cra.db.repos import repo_id
from cra.db.runs import start_run
from cra.workspace import Workspace


def test_a_short_plan_lists_each_adapter_against_min_examples(make_log) -> None:
    """With too little data, train-plan lists one line per adapter (rows it has, rows it
    needs) and names `[curate] min_examples` in cra.toml."""
    ws, _ = make_log(tasks_per_repo=1)
    with pytest.raises(NotEnoughData) as info:
        build_plan(ws)
    assert "[curate] min_examples = 20" in str(info.value)
    assert "cra.toml" in str(info.value)
    assert len(info.value.details) == 6  # five LoRA adapters and the scope ranker
    by_name = {line.split()[0]: line for line in info.value.details}
    assert set(by_name) == {
        "scope",
        "precision",
        "task-analysis",
        "planning",
        "execute-code",
        "scope-ranker",
    }
    assert "no repository clone" in by_name["scope-ranker"]  # the log has no clones
    assert "sft 4 train rows (needs 20)" in by_name["scope"]
    assert "dpo 4 train pairs (needs 20)" in by_name["planning"]
    out = CliRunner().invoke(cli, ["-w", str(ws.root), "train-plan"])
    assert out.exit_code == 1
    lines = out.output.splitlines()
    assert lines[0].startswith("error: not enough data to train any adapter")
    assert all(len(line) < 200 for line in lines[:7]), lines
    assert [line.split()[0] for line in lines[1:7]] == [d.split()[0] for d in info.value.details]
    assert "[curate] min_examples" in lines[-1]  # the hint says which setting to lower


def test_execute_rows_count_never_validated_apart_from_not_verified(make_log) -> None:
    """A task no validation ran on counts as "not validated" (pointing at `cra harness
    validate`), one validated without a verified verdict as "not verified"."""
    ws, log = make_log(tasks_per_repo=4)
    unverified = [t for t in log.tasks if t not in log.verified]
    assert len(unverified) >= 2
    now = "2025-01-01T00:00:00+00:00"
    with closing(ws.raw_db()) as conn:
        run = start_run(conn, repo_id(conn, log.repos[unverified[0]]) or 0, "validate", "{}", now)
        with transaction(conn):
            verdict = "no_fail_to_pass"
            row = OutcomeRow(
                unverified[0], run, "validation", verdict, "[]", "[]", "[]", None, "{}"
            )
            record_outcome(conn, row, [], env_id=None, now=now)
        options = curate_options(ws.config.settings.curate)
        got = build_candidates(LogAnalysis(conn), [("execute-code", "sft")], options)
    skipped = got.skipped["execute-code/sft"]
    assert skipped[NOT_VERIFIED] == 1
    assert skipped[NOT_VALIDATED] == len(unverified) - 1
    assert "cra harness validate" in NOT_VALIDATED


def test_curate_data_follows_the_newest_plan_by_default(make_log) -> None:
    """Without --plan, curate-data follows the newest plan of planning/ and says which on
    stderr; with no plan at all it fails in one line saying to run `cra train-plan`."""
    ws, _ = make_log(tasks_per_repo=6)
    runner = CliRunner()
    out = runner.invoke(cli, ["-w", str(ws.root), "curate-data", "--out", "d0"])
    assert out.exit_code == 1
    assert out.stderr.splitlines()[0].startswith("error: no training plan in ")
    assert "run `cra train-plan`" in out.stderr.splitlines()[0]
    plan = build_plan(ws)
    old = write_plan(ws.planning_dir, plan, ws.planning_dir / "b-old.json")
    new = write_plan(ws.planning_dir, plan, ws.planning_dir / "a-new.json")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    assert newest_plan(ws.planning_dir) == new
    out = runner.invoke(cli, ["-w", str(ws.root), "curate-data", "--out", "d1"])
    assert out.exit_code == 0, out.stderr
    assert f"following the newest plan, {new}" in out.stderr
    card = (ws.datasets_dir / "d1" / "card.json").read_text()
    assert '"path": "planning/a-new.json"' in card


def test_newest_plan_refuses_an_empty_planning_dir(workspace: Workspace) -> None:
    """An empty planning folder has no newest plan: PlanError naming `cra train-plan`."""
    with pytest.raises(PlanError, match="run `cra train-plan`"):
        newest_plan(workspace.planning_dir)


def test_a_second_dataset_of_the_same_data_says_it_sits_in_the_first(make_log) -> None:
    """Curating the same data twice fails saying how many rows already sit in which
    earlier dataset."""
    ws, _ = make_log(tasks_per_repo=6)
    plan_path = write_plan(ws.planning_dir, build_plan(ws), ws.planning_dir / "p.json")
    first = curate(ws, plan_path, "d1")
    trained = first.card["counts"]["train"]["rows"]
    out = CliRunner().invoke(cli, ["-w", str(ws.root), "curate-data", "--out", "d2"])
    assert out.exit_code == 1
    error = out.output.splitlines()[-2]
    assert "nothing worth writing" in error
    assert f"; {trained} rows were left out because they already sit in" in error
    assert "earlier dataset(s) d1" in error
    assert not Path(ws.datasets_dir / "d2").exists()
