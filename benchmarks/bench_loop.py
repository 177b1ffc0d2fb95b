"""`cra loop` on the real histories of `../shared/real-repos/`: does the loop improve the
scope ranker as it widens to one more repository per cycle?

Each bundle is cloned and packed (`cra repo pack --single-env`: the ranker needs no test
environments); the packages are the loop's queue. The loop runs with the real `cra loop
start` in a scratch workspace, one new repository per cycle (`--widen-every 1`), no
harness work (`--tasks-per-cycle 0`: the ranker learns from mined commits only). Each
cycle the train step fits `scope-ranker` on every repository mined so far, the evaluate
step scores the candidate and the active version on the pooled chronological holdout
(which grows with each repository: the active version is scored on the new one too), and
the gate decides. Printed per cycle: repositories so far, holdout recall@1/@5 and MRR of
the candidate and of what it is compared with (the active version, or on the first cycle
the stronger of BM25 and the frequency prior), the gate's decision and the loop's next
move; then the stop reason and the report's path. The baseline measured in the same run
is BM25 on the same holdout.

Needs the package registry (wheels come from the index), a sandbox for pack, and the
ranker extra. Run it niced: it is CPU-bound.
Usage: python benchmarks/bench_loop.py [--repos a,b,c] [--keep DIR] [--epochs E]
  --repos     bundles to use, in that order of names (default: the three smallest)
  --keep DIR  keep the workspace in DIR (re-running reuses the clones and packs)
  --epochs E  [ranker] epochs (default 1.0); --candidates K: files BM25 proposes (20)
  --table-only  print the table of the kept workspace's last run, running nothing
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.adapters.registry import Version, list_versions
from cra.db import loop as store
from cra.loop.decisions import CycleDecision, cycle_decisions
from cra.ranker_rows import RANKER_ADAPTER
from cra.workspace import Workspace, init_workspace, open_workspace

BUNDLES = Path(__file__).resolve().parents[1].parent / "shared" / "real-repos"
DEFAULT_REPOS = ("parso", "strictyaml", "typeguard")
CRA = [sys.executable, "-m", "cra"]


def _cra(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `cra -w WORKSPACE ARGS` niced, its output passed through to stderr."""
    argv = ["nice", "-n", "10", *CRA, "-w", str(workspace), *args]
    return subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, check=False)


def _pack(workspace: Workspace, name: str, scratch: Path) -> None:
    if (workspace.repos_dir / name / "manifest.json").exists():
        print(f"  {name}: already packed", file=sys.stderr)
        return
    source = scratch / f"{name}-src"
    if not source.exists():
        bundle = BUNDLES / f"{name}.bundle"
        subprocess.run(["git", "clone", "-q", str(bundle), str(source)], check=True)
    done = _cra(workspace.root, "repo", "pack", str(source), "--name", name, "--single-env")
    if done.returncode != 0:
        raise SystemExit(f"cra repo pack {name} failed with exit code {done.returncode}")


def _configure(workspace: Workspace, epochs: float, candidates: int) -> Workspace:
    """A small ranker run: the loop's budget goes to more repositories, not epochs."""
    config = workspace.root / "cra.toml"
    config.write_text(f"[ranker]\nepochs = {epochs}\ncandidates = {candidates}\n", encoding="utf-8")
    return open_workspace(workspace.root)


@dataclass(frozen=True)
class CycleRow:
    """One cycle as the table prints it."""

    number: int
    repos: list[str]
    seconds: float
    candidate: str
    cand: dict[str, float]
    against: str
    base: dict[str, float]
    bm25: dict[str, float]
    n: int
    gate: str
    next_move: str


def _eval_on(version: Version, key: str) -> dict[str, Any]:
    found = version.eval_metrics.get(key)
    return found if isinstance(found, dict) else {}


def _cycle_row(decision: CycleDecision, versions: dict[str, Version], repos: list[str]) -> CycleRow:
    ref = next((r for r in decision.candidates if r in versions), "")
    cand: dict[str, Any] = {}
    base: dict[str, Any] = {}
    bm25: dict[str, Any] = {}
    against, n = "-", 0
    if ref:
        version = versions[ref]
        evals = sorted(version.eval_metrics, key=lambda k: _eval_on(version, k)["evaluated_at"])
        key = evals[0] if evals else ""
        result = _eval_on(version, key)
        cand, bm25, n = (
            result.get("metrics", {}),
            result.get("bm25_metrics", {}),
            result.get("n", 0),
        )
        earlier = [
            v for v in versions.values() if v.version < version.version and key in v.eval_metrics
        ]
        if earlier:
            against, base = earlier[-1].ref, _eval_on(earlier[-1], key).get("metrics", {})
        else:
            against, base = result.get("base", "-"), result.get("base_metrics", {})
    return CycleRow(
        decision.number,
        repos,
        decision.runtime_s,
        ref or "-",
        cand,
        against,
        base,
        bm25,
        n,
        decision.gate,
        decision.next_move,
    )


def _rows(workspace: Workspace, run: store.LoopRun) -> list[CycleRow]:
    with closing(workspace.raw_db()) as conn:
        versions = {v.ref: v for v in list_versions(conn, workspace.root, RANKER_ADAPTER)}
    seen: list[str] = []
    out = []
    for decision in cycle_decisions(workspace, run.id):
        if decision.repo and decision.repo not in seen:
            seen.append(decision.repo)
        out.append(_cycle_row(decision, versions, list(seen)))
    return out


def _fmt(metrics: dict[str, float]) -> str:
    if not metrics:
        return "-"
    return " / ".join(f"{metrics.get(m, 0.0):.3f}" for m in ("recall@1", "recall@5", "mrr"))


def _print(rows: list[CycleRow]) -> None:
    print(
        "| cycle | repositories so far | s | candidate | holdout n | "
        "candidate R@1 / R@5 / MRR | compared with | its R@1 / R@5 / MRR | "
        "BM25 R@1 / R@5 / MRR | gate | next |"
    )
    print("|" + " --- |" * 11)
    for r in rows:
        print(
            f"| {r.number} | {len(r.repos)}: {', '.join(r.repos)} | {r.seconds:.0f} | "
            f"{r.candidate} | {r.n} | {_fmt(r.cand)} | {r.against} | {_fmt(r.base)} | "
            f"{_fmt(r.bm25)} | {r.gate} | {r.next_move} |"
        )


def main() -> None:
    """Pack the bundles, run the loop, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", default=",".join(DEFAULT_REPOS))
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--max-hours", type=float, default=6.0)
    parser.add_argument("--table-only", action="store_true", help="print the last run's table")
    args = parser.parse_args()
    names = [n for n in args.repos.split(",") if n]
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench-loop-"))
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ.pop("CRA_HOME", None)
    if args.table_only:
        workspace = open_workspace(scratch / "ws")
        with closing(workspace.raw_db()) as conn:
            last = store.latest_run(conn)
        if last is None:
            raise SystemExit(f"no loop run in {scratch / 'ws'}")
        _print(_rows(workspace, last))
        return
    workspace = init_workspace(scratch / "ws").workspace
    workspace = _configure(workspace, args.epochs, args.candidates)
    started = time.perf_counter()
    for name in names:
        _pack(workspace, name, scratch)
    packed_s = time.perf_counter() - started
    loop_args = ["--widen-every", "1", "--tasks-per-cycle", "0", "--patience", "1"]
    # One cycle per repository, one with nothing new (patience 1: converged), one spare.
    loop_args += ["--max-cycles", str(len(names) + 2), "--cycle-timeout-s", "21600"]
    loop_args += ["--max-hours", str(args.max_hours), "--min-hours", str(args.max_hours)]
    started = time.perf_counter()
    done = _cra(workspace.root, "loop", "start", *loop_args)
    loop_s = time.perf_counter() - started
    with closing(workspace.raw_db()) as conn:
        run = store.latest_run(conn)
    if run is None:
        raise SystemExit(f"no loop run recorded (cra loop start exited {done.returncode})")
    print(f"cra loop on {len(names)} real repositories ({', '.join(names)}), workspace {scratch}")
    print(f"packed in {packed_s:.0f} s; loop ran {loop_s:.0f} s, exit code {done.returncode}")
    _print(_rows(workspace, run))
    print(f"stop reason: {run.stop_reason}")
    print(f"final report: {workspace.loop_dir / f'report-{run.id}.md'}")


if __name__ == "__main__":
    main()
