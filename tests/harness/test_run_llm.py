"""`cra harness run` as a user runs it: mined with `cra harness mine`, planned by a real
vLLM server (the CPU build) serving the tiny model, and with several worker threads."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from cra.cli import cli
from cra.workspace import init_workspace, open_workspace


def _mined(root, project_repo, toml: str = ""):
    """A workspace at `root` with the factory history cloned in and mined."""
    workspace = init_workspace(root).workspace
    if toml:
        (workspace.root / "cra.toml").write_text(toml)
    target = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(target)], check=True)
    result = CliRunner().invoke(cli, ["-w", str(root), "harness", "mine", "--repo", "tally"])
    assert result.exit_code == 0, result.output
    return open_workspace(root)


def test_llm_planner_against_a_real_vllm_server(vllm_server, project_repo, tmp_path) -> None:
    """The LLM planner keeps a plan and a logged call per task and temperature; junk scores 0."""
    toml = (
        f'[llm]\nendpoint = "{vllm_server.base_url}"\nmodel = "tiny"\nmax_tokens = 48\n'
        "timeout_s = 120.0\n"
    )
    workspace = _mined(tmp_path / "ws", project_repo, toml)
    planner = ("--planner", "llm", "--temperatures", "0.2,1.0")
    args = ["-w", str(workspace.root), "harness", "run", "--repo", "tally", *planner]
    args += ["--limit", "3", "--jobs", "2", "--no-validate", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["tasks_done"] == 3
    conn = workspace.raw_db()
    plans = conn.execute(
        "SELECT p.task_id, p.temperature, p.valid, p.raw, p.error, p.llm_call_id, s.alignment "
        "FROM plans p JOIN plan_scores s ON s.plan_id = p.id ORDER BY p.task_id, p.temperature"
    ).fetchall()
    assert len(plans) == 6  # two temperatures for each of three tasks
    assert {p["temperature"] for p in plans} == {0.2, 1.0}
    for plan in plans:
        assert plan["llm_call_id"] is not None
        assert plan["raw"]  # the model's own words are kept, parseable or not
        if not plan["valid"]:
            # junk from a random model is kept as invalid, scored 0, and the run goes on
            assert plan["error"] and plan["alignment"] == 0.0
    calls = conn.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()
    assert len(calls) == 6
    for call in calls:
        assert call["stage"] == "plan"
        assert call["model"] == "tiny"
        assert call["endpoint"] == vllm_server.base_url
        assert call["error"] is None
        assert call["task_id"] in {p["task_id"] for p in plans}
        assert call["prompt_tokens"] > 0 and 0 < call["completion_tokens"] <= 48
        assert call["latency_ms"] > 0
        assert json.loads(call["params"])["response_format"]["type"] == "json_schema"
        messages = json.loads(call["messages"])
        assert messages[0]["role"] == "system" and messages[1]["content"].startswith("Task: ")
    status = CliRunner().invoke(cli, ["-w", str(workspace.root), "harness", "status"])
    assert status.exit_code == 0 and "llm" in status.output


def test_parallel_workers_record_what_one_worker_records(project_repo, tmp_path) -> None:
    """Several workers record the same retrievals, plans and scores as one, leaving no worktree."""

    def rows(workspace):
        return [
            tuple(r)
            for r in workspace.raw_db().execute(
                "SELECT p.task_id, t.gold_files, t.gold_symbols, r.results, p.plan, "
                "s.alignment FROM plans p JOIN tasks t USING (task_id) "
                "JOIN plan_scores s ON s.plan_id = p.id "
                "JOIN retrievals r ON r.task_id = p.task_id ORDER BY p.task_id"
            )
        ]

    serial = _mined(tmp_path / "one", project_repo)
    parallel = _mined(tmp_path / "three", project_repo)
    for workspace, jobs in ((serial, "1"), (parallel, "3")):
        result = CliRunner().invoke(
            cli,
            [
                "-w",
                str(workspace.root),
                "harness",
                "run",
                "--repo",
                "tally",
                "--jobs",
                jobs,
                "--no-validate",
            ],
        )
        assert result.exit_code == 0, result.output
    assert rows(parallel) == rows(serial)
    assert len(rows(serial)) >= 5
    assert not any((parallel.harness_dir / "worktrees").iterdir())
