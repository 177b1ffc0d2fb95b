"""The commit funnel on the factory history, incremental runs, and the CLI."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from cra.cli import cli
from cra.harness.gitscan import scan_history
from cra.harness.mine import mine_repo


def _clone(workspace, project_repo) -> None:
    target = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(target)], check=True)


def test_every_kind_lands_in_its_expected_stage_with_a_reason(workspace, project_repo) -> None:
    """Mining records each commit at its expected stage; every dropped commit carries a reason."""
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
    """A qualified commit keeps its subject as task, its source and test files and a score."""
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
    """Mining again adds nothing; a rescore applies stricter limits without adding rows."""
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
    """The history scan lists a repository's commits oldest first."""
    history = scan_history(project_repo.path)
    assert [c.sha for c in history] == [c.sha for c in project_repo.commits]


def test_cli_mine_status_and_run(workspace, project_repo) -> None:
    """The CLI mines, plans one task per qualified commit and reports the funnel in status."""
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
    assert table.output.splitlines()[0].split("\t")[:2] == ["repo", "in"]


def test_unknown_repo_is_one_line(workspace) -> None:
    """An unknown repository exits 1 with one line; a bad since date exits 2 as not a date."""
    result = CliRunner().invoke(cli, ["harness", "mine", "--repo", "nope"])
    assert result.exit_code == 1
    assert "no repository 'nope'" in result.output
    bad_date = CliRunner().invoke(cli, ["harness", "mine", "--repo", "x", "--since", "soon"])
    assert bad_date.exit_code == 2
    assert "not a date" in bad_date.output


def test_fast_and_full_pydriller_paths_give_identical_verdicts(tmp_path) -> None:
    """The fast history path gives the same stage and reason per commit as the full one."""
    from cra.fixtures.history import build_project_repo
    from cra.harness.stages import Limits, fast_verdicts, slow_verdicts

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
    from cra.harness.gitscan import patch_sizes, pydriller_patch_sizes, scan_history

    repo = build_project_repo(tmp_path / "r", extra_commits=40)
    shas = [c.sha for c in scan_history(repo.path) if len(c.parents) == 1]
    fast = patch_sizes(repo.path, shas)
    assert fast == pydriller_patch_sizes(repo.path, shas)
    assert len(fast) == len(shas) and all(size > 0 for size in fast.values())
    assert patch_sizes(repo.path, []) == {}


def _mine_small_history(tmp_path):
    """A real repository whose commits probe the tests stage and the conventional type,
    mined into a real raw.db; returns (shas by name, rows by sha)."""
    from contextlib import closing

    from cra.db import open_raw
    from cra.harness.mine import mine_history
    from cra.harness.stages import Limits
    from cra.repos.layout import register_repo
    from tests.harness.gitutil import Repo

    repo = Repo(tmp_path / "repo")
    src = "def half(x):\n    return x / 2\n"
    test = "from pkg.core import half\n\n\ndef test_half():\n    assert half(4) == 2\n"
    shas = {
        "root": repo.commit({"pkg/core.py": src, "tests/test_core.py": test}, "Start the package"),
        "conftest_only": repo.commit(
            {"pkg/core.py": src + "# guard\n", "conftest.py": "import pytest\n"},
            "Guard half against strings in the loader",
        ),
        "helper_only": repo.commit(
            {"pkg/core.py": src + "# guard 2\n", "tests/helpers.py": "X = 1\n"},
            "Guard half against bytes in the loader",
        ),
        "module": repo.commit(
            {
                "pkg/core.py": src.replace("/ 2", "// 2"),
                "tests/test_core.py": test + "\n\ndef test_floor():\n    assert half(5) == 2\n",
            },
            "fix(core): return the floor of half for odd numbers",
        ),
        "docs": repo.commit(
            {
                "pkg/core.py": '"""Halves."""\n' + src.replace("/ 2", "// 2"),
                "tests/test_core.py": test + "\n\ndef test_more():\n    assert half(6) == 3\n",
            },
            "docs: describe what the core module does",
        ),
    }
    with closing(open_raw(tmp_path / "raw.db")) as conn:
        repo_id = register_repo(conn, "small")
        result = mine_history(conn, repo_id, "small", repo.path, Limits())
        rows = {
            r["sha"]: dict(r)
            for r in conn.execute(
                "SELECT sha, stage, reason, verdict, conventional_type FROM commits"
            )
        }
    return shas, rows, result


def test_test_support_outside_a_test_directory_is_dropped_at_the_tests_stage(
    tmp_path,
) -> None:
    """A root conftest.py is test support with no test directory whose modules would run
    it: it does not make a commit a task. A helper inside tests/ does, since validation
    runs the modules of that directory (the same rule, `exercises_tests`)."""
    shas, rows, result = _mine_small_history(tmp_path)
    row = rows[shas["conftest_only"]]
    assert (row["stage"], row["reason"]) == (
        "tests",
        "changes test support outside a test directory only",
    )
    assert rows[shas["helper_only"]]["verdict"] == "qualified"
    assert rows[shas["module"]]["verdict"] == "qualified", rows[shas["module"]]["reason"]
    assert result.reasons["tests"]["changes test support outside a test directory only"] == 1


def test_mining_records_each_commits_conventional_type(tmp_path) -> None:
    """Every row carries its subject's conventional type (NULL without one); a docs
    commit that would otherwise qualify is dropped at the message stage for its type."""
    shas, rows, _ = _mine_small_history(tmp_path)
    assert {name: rows[sha]["conventional_type"] for name, sha in shas.items()} == {
        "root": None,
        "conftest_only": None,
        "helper_only": None,
        "module": "fix",
        "docs": "docs",
    }
    docs = rows[shas["docs"]]
    assert (docs["stage"], docs["reason"]) == (
        "message",
        "conventional type docs: changes no behaviour",
    )


def test_a_commit_that_only_deletes_test_files_is_dropped_at_the_tests_stage() -> None:
    """Validation runs the test modules present at the commit; deleting one gives none."""
    from cra.harness.gitscan import CommitFacts, FileChange
    from cra.harness.stages import Limits, judge

    facts = CommitFacts(
        "b" * 40,
        ("a" * 40,),
        0,
        "2024-01-01T00:00:00+00:00",
        "Ada <ada@example.org>",
        "Remove the experimental percentile helper",
        (
            FileChange("pkg/percentile.py", None, "M", 1, 3),
            FileChange("tests/test_percentile.py", None, "D", 0, 5),
        ),
    )
    verdict = judge(facts, Limits(), patch_chars=lambda: 10)
    assert (verdict.stage, verdict.reason) == ("tests", "only deletes test files")
