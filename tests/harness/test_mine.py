"""The commit funnel on the factory history, incremental runs, and the CLI."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from cra.cli import cli
from cra.harness.mine import mine_repo, scan_history


def _clone(workspace, project_repo) -> None:
    target = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(target)], check=True)


def test_every_kind_lands_in_its_expected_stage_with_a_reason(workspace, project_repo) -> None:
    _clone(workspace, project_repo)
    result = mine_repo(workspace, "tally")
    assert result.seen == len(project_repo.commits)
    rows = {
        r["sha"]: r
        for r in workspace.raw_db().execute("SELECT sha, stage, reason, verdict FROM commits")
    }
    for commit in project_repo.commits:
        row = rows[commit.sha]
        assert row["stage"] == commit.expected_stage, (commit.kind, commit.subject, row["reason"])
        if commit.expected_stage == "qualified":
            assert row["verdict"] == "qualified"
            assert row["reason"] is None
        else:
            assert row["verdict"] == "dropped"
            assert row["reason"]


def test_qualifying_rows_carry_the_task_and_files(workspace, project_repo) -> None:
    _clone(workspace, project_repo)
    mine_repo(workspace, "tally")
    fix = project_repo.of_kind("bugfix")[0]
    row = workspace.raw_db().execute("SELECT * FROM commits WHERE sha = ?", (fix.sha,)).fetchone()
    assert row["task_text"] == fix.subject
    assert json.loads(row["files_source"]) == ["src/tally/stats.py"]
    assert json.loads(row["files_tests"]) == ["tests/test_stats.py"]
    assert row["message_score"] > 0.6
    odd = project_repo.of_kind("non_utf8")[0]
    text = (
        workspace.raw_db()
        .execute("SELECT task_text FROM commits WHERE sha = ?", (odd.sha,))
        .fetchone()[0]
    )
    assert text.startswith("Add caf") and text.endswith("name normalisation")


def test_rerun_is_incremental_and_rescore_applies_new_thresholds(workspace, project_repo) -> None:
    _clone(workspace, project_repo)
    first = mine_repo(workspace, "tally")
    again = mine_repo(workspace, "tally")
    assert (again.new, again.rescored) == (0, 0)
    assert again.qualified == first.qualified
    conn = workspace.raw_db()
    count = conn.execute("SELECT count(*) FROM commits").fetchone()[0]
    assert count == len(project_repo.commits)
    (workspace.root / "cra.toml").write_text("[mine]\nmax_source_lines = 3\n")
    from cra.workspace import open_workspace

    strict = mine_repo(open_workspace(workspace.root), "tally", rescore=True)
    assert strict.rescored == len(project_repo.commits)
    assert strict.qualified < first.qualified
    assert conn.execute("SELECT count(*) FROM commits").fetchone()[0] == count


def test_history_is_chronological(project_repo) -> None:
    history = scan_history(project_repo.path)
    assert [c.sha for c in history] == [c.sha for c in project_repo.commits]


def test_cli_mine_status_and_run(workspace, project_repo) -> None:
    _clone(workspace, project_repo)
    runner = CliRunner()
    mined = runner.invoke(cli, ["harness", "mine", "--repo", "tally", "--json"])
    assert mined.exit_code == 0, mined.output
    data = json.loads(mined.output)
    assert data["qualified"] == len(
        [c for c in project_repo.commits if c.expected_stage == "qualified"]
    )
    ran = runner.invoke(cli, ["harness", "run", "--repo", "tally", "--no-validate", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["plans"] == data["qualified"]
    status = runner.invoke(cli, ["harness", "status", "--json"])
    body = json.loads(status.output)
    assert body["funnel"][0]["qualified"] == data["qualified"]
    assert body["alignment"][0]["planner"] == "baseline"
    table = runner.invoke(cli, ["harness", "status"])
    assert "commit funnel" in table.output


def test_unknown_repo_is_one_line(workspace) -> None:
    result = CliRunner().invoke(cli, ["harness", "mine", "--repo", "nope"])
    assert result.exit_code == 1
    assert "no repository 'nope'" in result.output
    bad_date = CliRunner().invoke(cli, ["harness", "mine", "--repo", "x", "--since", "soon"])
    assert bad_date.exit_code == 2
    assert "not a date" in bad_date.output


def test_fast_and_full_pydriller_paths_give_identical_verdicts(tmp_path) -> None:
    from cra.fixtures.history import build_project_repo
    from cra.harness.mine import Limits, fast_verdicts, slow_verdicts

    repo = build_project_repo(tmp_path / "big", extra_commits=250)
    for limits in (Limits(), Limits(max_source_files=1, max_source_lines=4, max_patch_chars=300)):
        fast = fast_verdicts(repo.path, limits)
        slow = slow_verdicts(repo.path, limits)
        assert len(fast) == len(repo.commits) == 270
        assert {s: (v.stage, v.reason) for s, v in fast.items()} == {
            s: (v.stage, v.reason) for s, v in slow.items()
        }


def test_one_process_patch_sizes_equal_pydriller_diffs(tmp_path) -> None:
    """Renames, a binary file, a Latin-1 message, a 2,500-line commit: same characters."""
    from cra.fixtures.history import build_project_repo
    from cra.harness.mine import patch_sizes, pydriller_patch_sizes, scan_history

    repo = build_project_repo(tmp_path / "r", extra_commits=40)
    shas = [c.sha for c in scan_history(repo.path) if len(c.parents) == 1]
    fast = patch_sizes(repo.path, shas)
    assert fast == pydriller_patch_sizes(repo.path, shas)
    assert len(fast) == len(shas) and all(size > 0 for size in fast.values())
    assert patch_sizes(repo.path, []) == {}
