"""Rows built from a real harness run over the factory history: gold plans score full
alignment, and gold patches of verified commits apply to their parent."""

from __future__ import annotations

import json
import subprocess
from contextlib import closing

from cra.curation.candidates import NOT_VALIDATED, build_candidates
from cra.curation.rows import CurateOptions
from cra.db import transaction
from cra.db.logs import LogAnalysis
from cra.harness.mine import mine_repo
from cra.harness.plan import parse_plan
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness


def test_gold_rows_from_a_real_run(workspace, project_repo, tmp_path) -> None:
    """Gold patches come from verified tasks and apply; gold plans and scopes match gold files."""
    clone = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(clone)], check=True)
    mine_repo(workspace, "tally")
    run_harness(workspace, "tally", RunOptions())
    with closing(workspace.raw_db()) as conn:
        logs = LogAnalysis(conn)
        tasks = logs.tasks()
        verified = tasks[: len(tasks) // 2]
        with transaction(conn):  # what validation records for a verified task
            for t in verified:
                conn.execute(
                    "INSERT INTO outcomes (task_id, kind, verdict, created_at) "
                    "VALUES (?, 'validation', 'verified', 'now')",
                    (t.task_id,),
                )
        groups = [("execute-code", "sft"), ("planning", "sft"), ("scope", "sft")]
        with closing(workspace.curated_db()) as curated:
            got = build_candidates(
                logs, groups, CurateOptions(), repos_dir=workspace.repos_dir, curated=curated
            )
        without_clone = build_candidates(logs, groups, CurateOptions(), repos_dir=None)
    execute = [r for r in got.rows if r.adapter == "execute-code"]
    assert {r.task_id for r in execute} <= {t.task_id for t in verified}
    assert execute
    assert got.skipped["execute-code/sft"][NOT_VALIDATED] == len(tasks) - len(verified)
    assert not [r for r in without_clone.rows if r.adapter == "execute-code"]
    by_id = {t.task_id: t for t in tasks}
    for row in execute:
        task = by_id[row.task_id]
        patch = row.record["completion"][0]["content"]
        assert patch.startswith("diff --git")
        # The gold patch applies to the parent and touches the gold files only.
        work = tmp_path / task.sha[:8]
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(work), task.parent_sha],
            cwd=clone,
            check=True,
        )
        subprocess.run(
            ["git", "apply", "--check", "-"], input=patch, text=True, cwd=work, check=True
        )
        changed = {
            line.split(" b/")[-1] for line in patch.splitlines() if line.startswith("diff --git")
        }
        assert changed <= {f["path"] for f in task.gold_files}
        assert "Files to change" in row.record["prompt"][-1]["content"]
    planning = [r for r in got.rows if r.adapter == "planning"]
    assert len(planning) == len(tasks)
    for row in planning:
        task = by_id[row.task_id]
        plan = parse_plan(row.record["completion"][0]["content"])
        assert [s.file for s in plan.steps] == [f["path"] for f in task.gold_files]
        assert row.record["meta"]["scores"]["alignment"] == 1.0
        assert row.record["meta"]["source"] == "gold"
    scope = {
        r.task_id: json.loads(r.record["completion"][0]["content"])
        for r in got.rows
        if r.adapter == "scope"
    }
    assert all(scope[t.task_id] == [f["path"] for f in t.gold_files] for t in tasks)


def test_gold_plan_orders_steps_dependency_first() -> None:
    """The gold plan orders steps so a file comes after the files it depends on."""
    from cra.curation.gold import gold_plan
    from cra.db.log_tasks import TaskRecord
    from cra.harness.plan import validate_plan

    task = TaskRecord(
        "r@1",
        "r",
        "d",
        "1" * 40,
        "0" * 40,
        "2024-01-01T00:00:00+00:00",
        0,
        "Use the new parser in the CLI",
        "Use the new parser in the CLI",
        ({"path": "src/cli.py", "old_path": None}, {"path": "src/parse.py", "old_path": None}),
        (
            {"path": "src/cli.py", "qualname": "main", "change": "modified"},
            {"path": "src/parse.py", "qualname": "parse", "change": "added"},
        ),
        ("tests/test_cli.py",),
    )
    plan = validate_plan(gold_plan(task, {"src/cli.py": {"src/parse.py"}}))
    assert [(s.id, s.file, s.depends_on) for s in plan.steps] == [
        (1, "src/parse.py", ()),
        (2, "src/cli.py", (1,)),
    ]
    assert plan.steps[0].action == "add" and plan.steps[0].symbols == ("parse",)
    assert [t.file for t in plan.tests] == ["tests/test_cli.py"]
    unordered = validate_plan(gold_plan(task))
    assert [s.file for s in unordered.steps] == ["src/cli.py", "src/parse.py"]
