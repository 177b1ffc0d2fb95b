"""Mining benchmark: the fast path against naive PyDriller and raw `git log --numstat`.

Builds a factory history of about 1,837 commits, then times, in the same run:
- `git log --numstat` alone (the floor);
- the fast path (one log pass, then one `git diff-tree` pass over the survivors only);
- the naive path (PyDriller reading `modified_files` for every commit);
- `cra harness mine` end to end (the fast path plus writing every verdict to `raw.db`).
Prints the times and the ratios. Usage: python benchmarks/bench_mine.py [COMMITS]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cra.fixtures.history import build_project_repo
from cra.harness.mine import mine_repo
from cra.harness.stages import Limits, fast_verdicts, slow_verdicts
from cra.workspace import init_workspace


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1837
    with tempfile.TemporaryDirectory() as tmp:
        workspace = init_workspace(Path(tmp) / "ws").workspace
        where = workspace.repos_dir / "bench" / "repo"
        build_s, repo = timed(lambda: build_project_repo(where, extra_commits=total - 20))
        print(f"built {len(repo.commits)} commits in {build_s:.1f} s")
        git_log = ["git", "log", "--numstat", "HEAD"]
        log_s, _ = timed(
            lambda: subprocess.run(git_log, cwd=repo.path, capture_output=True, check=True)
        )
        fast_s, fast = timed(lambda: fast_verdicts(repo.path, Limits()))
        slow_s, slow = timed(lambda: slow_verdicts(repo.path, Limits()))
        mine_s, mined = timed(lambda: mine_repo(workspace, "bench"))
        same = {s: (v.stage, v.reason) for s, v in fast.items()} == {
            s: (v.stage, v.reason) for s, v in slow.items()
        }
        qualified = sum(v.qualified for v in fast.values())
        print(f"git log --numstat : {log_s:7.2f} s")
        print(f"fast path         : {fast_s:7.2f} s  ({qualified} qualifying)")
        print(f"naive PyDriller   : {slow_s:7.2f} s")
        print(f"cra harness mine  : {mine_s:7.2f} s  ({mined.qualified} qualifying, into raw.db)")
        print(f"naive / fast      : {slow_s / fast_s:7.1f}x")
        print(f"fast / git log    : {fast_s / log_s:7.1f}x")
        print(f"identical verdicts: {same}")


if __name__ == "__main__":
    main()
