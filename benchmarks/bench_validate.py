"""Validation time per commit on the sample repository, and the share of it spent
outside the tests themselves (overhead: trees, copies, sandbox, parsing, recording).

Measured in the same run, on the same qualifying commits of the demo's sample history:
- the tests alone: the exact pytest commands validation runs (before and after, `runs`
  times each), run directly on prepared trees with no sandbox and no cra work;
- validation: `cra harness validate` over the same commits, sandboxed.
Prints seconds per commit for each and the overhead share. Target: overhead <= 20%.
Usage: python benchmarks/bench_validate.py [COMMITS] (default 10)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from cra.db.commits import qualified_commits
from cra.env.build import build_env
from cra.fixtures.history import build_project_repo
from cra.fixtures.wheelhouse import build_wheelhouse
from cra.harness.mine import mine_repo
from cra.harness.runner import PLUGIN, PLUGIN_DIR
from cra.harness.trees import before_tree, export_tree
from cra.harness.validate import ValidateOptions, validate_repo
from cra.repos.pack import PackOptions, pack
from cra.workspace import init_workspace


def main() -> None:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workspace = init_workspace(tmp / "ws").workspace
        build_project_repo(tmp / "tally", extra_commits=60)
        build_wheelhouse(tmp / "wheels")
        pack(workspace, str(tmp / "tally"), PackOptions(name="tally", find_links=tmp / "wheels"))
        mine_repo(workspace, "tally")
        env = build_env(workspace, "tally")
        runs = workspace.config.settings.validate.runs
        with closing(workspace.raw_db()) as conn:
            repo_id = conn.execute("SELECT id FROM repos WHERE name = 'tally'").fetchone()[0]
            commits = qualified_commits(conn, repo_id, None)[:limit]
        repo_dir = workspace.repos_dir / "tally" / "repo"
        prepared = []
        for i, commit in enumerate(commits):
            before, after = tmp / "trees" / f"{i}-before", tmp / "trees" / f"{i}-after"
            tests = before_tree(repo_dir, commit, before)
            export_tree(repo_dir, commit.sha, after)
            prepared.append((tests, before, after))
        per_test = min(
            workspace.config.settings.validate.per_test_timeout_s, env.per_test_timeout_s
        )
        start = time.perf_counter()
        for tests, before, after in prepared:
            for _ in range(runs):
                for tree in (before, after):
                    run_env = env.run_env(tree)
                    run_env["PYTHONPATH"] += f":{PLUGIN_DIR}"
                    run_env["CRA_REPORT_PATH"] = str(tmp / "report.jsonl")
                    pytest_argv = env.test_argv(per_test_timeout=False)
                    plugins = ["-p", PLUGIN, "-p", "no:cacheprovider"]
                    flags = ["--continue-on-collection-errors", "-q", "-rN"]
                    timeout = f"--timeout={per_test:g}"
                    argv = [*pytest_argv, timeout, *plugins, *flags, *tests]
                    subprocess.run(argv, cwd=tree, env=run_env, capture_output=True, check=False)
        tests_alone = (time.perf_counter() - start) / len(commits)
        summary = validate_repo(workspace, "tally", ValidateOptions(limit=limit))
        validation = summary.seconds / summary.tasks_done
        overhead = (validation - tests_alone) / validation
        print(
            f"commits validated  : {summary.tasks_done} ({runs} runs before and after each), "
            f"isolation {summary.isolation}"
        )
        print(f"verified           : {summary.latest.get('verified', 0)} of {summary.tasks_done}")
        print(f"tests alone        : {tests_alone:6.3f} s per commit (baseline)")
        print(f"validation         : {validation:6.3f} s per commit")
        print(f"validation / tests : {validation / tests_alone:6.2f}x")
        print(
            f"overhead share     : {overhead * 100:5.1f}% "
            f"(target <= 20%: {'met' if overhead <= 0.2 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
