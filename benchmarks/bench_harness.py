"""Harness overhead per commit, without the model call: checkout, incremental index,
retrieve, baseline plan, score and record, on the sample repository's history.

Measured in the same run:
- the harness: `cra harness run --planner baseline` over every qualifying commit;
- the floor: the same commits' parent checkouts alone (what git costs, no cra work).
Prints milliseconds per commit for each and their ratio. Target: harness ≤ 100 ms per
commit. Usage: python benchmarks/bench_harness.py [EXTRA_COMMITS] (default 60, as the demo)
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from cra.fixtures.history import build_project_repo
from cra.harness.mine import mine_repo
from cra.harness.planning import RunOptions, parent_checkout
from cra.harness.run import run_harness
from cra.workspace import init_workspace


def main() -> None:
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    with tempfile.TemporaryDirectory() as tmp:
        workspace = init_workspace(Path(tmp) / "ws").workspace
        repo_dir = workspace.repos_dir / "tally" / "repo"
        build_project_repo(repo_dir, extra_commits=extra)
        mined = mine_repo(workspace, "tally")
        with closing(workspace.raw_db()) as conn:
            query = "SELECT parent_sha FROM commits WHERE verdict = 'qualified'"
            parents = [r[0] for r in conn.execute(query)]
        start = time.perf_counter()
        for i, parent in enumerate(parents):
            with parent_checkout(repo_dir, parent, Path(tmp) / "floor" / str(i)):
                pass
        floor = (time.perf_counter() - start) / len(parents)
        start = time.perf_counter()
        summary = run_harness(workspace, "tally", RunOptions(planner="baseline"))
        harness = (time.perf_counter() - start) / summary.tasks_done
        print(f"history           : {mined.seen} commits, {summary.tasks_done} tasks")
        print(f"parent checkout   : {floor * 1000:7.1f} ms per commit (floor)")
        print(
            f"harness, baseline : {harness * 1000:7.1f} ms per commit "
            f"(target <= 100 ms: {'met' if harness <= 0.1 else 'NOT met'})"
        )
        print(f"cra work          : {(harness - floor) * 1000:7.1f} ms per commit above the floor")
        print(f"harness / floor   : {harness / floor:7.2f}x")
        print(f"files re-parsed   : {summary.reparsed_files} over {summary.tasks_done} tasks")


if __name__ == "__main__":
    main()
