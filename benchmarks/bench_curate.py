"""Curation benchmark: `cra curate-data` on a synthetic log of 100k plans.

Writes a synthetic `raw.db` through cra's writers (6 repositories, 25,000 tasks, a
baseline plan and three model plans per task = 100,000 plans, with planted exact and
near duplicates), then times, in the same run:
- reading every task and scored plan through LogAnalysisAPI (the floor);
- `cra train-plan` (analysis and row estimates);
- `cra curate-data` end to end (rows, time split, exact and MinHash LSH dedup, domain
  cap, writing and hashing the JSONL, registering the dataset);
- near-duplicate detection alone, cra's vectorised MinHash + banding against datasketch
  alone (`MinHash.bulk` + `MinHashLSH` at the same threshold), with how many of
  their keep/drop decisions differ.
Prints the times, rows per second and the ratios. Target: curate-data <= 30 s.
Usage: python benchmarks/bench_curate.py [PLANS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from cra.curation.candidates import build_candidates
from cra.curation.curate import curate
from cra.curation.dedup import deduplicate, shingle_hashes
from cra.curation.plan import build_plan, curate_options, write_plan
from cra.db.logs import LogAnalysis
from cra.fixtures.logs import DEFAULT_REPOS, build_synthetic_log
from cra.workspace import init_workspace

CPU: dict[str, float] = {}


def timed(fn, name: str = "") -> tuple[float, object]:
    """Wall time of `fn()` (and its CPU time under `name`: the machine may be shared)."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    CPU[name] = time.process_time() - cpu
    return time.perf_counter() - start, value


def main() -> None:
    plans = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_task = 4  # one baseline plan and three temperatures
    per_repo = max(1, plans // per_task // len(DEFAULT_REPOS))
    with tempfile.TemporaryDirectory() as tmp:
        workspace = init_workspace(Path(tmp) / "ws").workspace
        config = workspace.root / "cra.toml"
        config.write_text(
            config.read_text().replace("teacher_models = []", 'teacher_models = ["teacher"]')
        )
        workspace = init_workspace(workspace.root).workspace

        def write() -> object:
            with closing(workspace.raw_db()) as conn:
                return build_synthetic_log(
                    conn,
                    tasks_per_repo=per_repo,
                    exact_duplicates=per_repo // 10,
                    near_duplicates=per_repo // 10,
                    teacher_model="teacher",
                )

        build_s, log = timed(write)
        print(
            f"wrote {len(log.tasks)} tasks, {log.plans} plans, {log.llm_calls} model calls "
            f"in {build_s:.1f} s"
        )

        def floor() -> int:
            with closing(workspace.raw_db()) as conn:
                logs = LogAnalysis(conn)
                return len(logs.tasks()) + sum(1 for _ in logs.iter_plans())

        floor_s, _ = timed(floor)
        plan_s, plan = timed(lambda: build_plan(workspace))
        path = write_plan(workspace, plan, workspace.planning_dir / "bench.json")  # type: ignore[arg-type]
        curate_s, result = timed(lambda: curate(workspace, path, "bench"), "curate")
        card = result.card  # type: ignore[attr-defined]
        rows = card["counts"]["candidates"]
        written = card["counts"]["train"]["rows"] + card["counts"]["eval"]["rows"]
        dropped = {f["filter"].split(" (")[0]: f["dropped"] for f in card["filters"]}
        print(f"read tasks+plans (floor): {floor_s:7.2f} s")
        print(f"cra train-plan          : {plan_s:7.2f} s")
        print(
            f"cra curate-data         : {curate_s:7.2f} s  (target <= 30 s; "
            f"{CPU['curate']:.2f} s of CPU)"
        )
        print(f"candidate rows          : {rows}  ({rows / curate_s:,.0f} rows/s)")
        print(
            f"rows written            : {written}  (train {card['counts']['train']['rows']}, "
            f"eval {card['counts']['eval']['rows']})"
        )
        print(f"dropped                 : {dropped}")
        print(f"curate-data / floor     : {curate_s / floor_s:7.1f}x")
        near_dup_baseline(
            workspace, plan, ws_threshold=workspace.config.settings.curate.near_dup_threshold
        )


def datasketch_keep(rows, threshold: float, num_perm: int, words: int) -> set[int]:
    """Reference: datasketch's MinHash (bulk) and MinHashLSH, per (adapter, technique)."""
    from datasketch import MinHash, MinHashLSH

    shingled = [
        shingle_hashes(f"{row.dedup_context} {row.dedup_text}", words).tolist() for row in rows
    ]
    signatures = MinHash.bulk(shingled, num_perm=num_perm, hashfunc=int)
    kept: set[int] = set()
    index: dict = {}
    for n, (row, signature) in enumerate(zip(rows, signatures, strict=True)):
        lsh = index.get(row.group)
        if lsh is None:
            lsh = index[row.group] = MinHashLSH(threshold=threshold, num_perm=num_perm)
        if lsh.query(signature):
            continue
        lsh.insert(str(n), signature)
        kept.add(n)
    return kept


def near_dup_baseline(workspace, plan, *, ws_threshold: float) -> None:
    groups = [
        (a["name"], t["technique"])
        for a in plan["adapters"]
        if a["train"]
        for t in a["techniques"]
        if t["train"]
    ]
    with closing(workspace.raw_db()) as conn:
        rows = build_candidates(LogAnalysis(conn), groups, curate_options(workspace)).rows
    curate = workspace.config.settings.curate
    perm, words = curate.minhash_perm, curate.shingle_words
    cra_s, (_, kept_rows, _) = timed(
        lambda: deduplicate([], rows, threshold=ws_threshold, num_perm=perm, shingle_words=words)
    )
    ds_s, kept = timed(lambda: datasketch_keep(rows, ws_threshold, 128, words))
    ours = {id(r) for r in kept_rows}
    differ = sum((id(r) in ours) != (n in kept) for n, r in enumerate(rows))
    print(f"near-dup, cra           : {cra_s:7.2f} s  ({len(rows) - len(kept_rows)} dropped)")
    print(
        f"near-dup, datasketch    : {ds_s:7.2f} s  ({len(rows) - len(kept)} dropped, "
        f"128 permutations)"
    )
    print(f"datasketch / cra        : {ds_s / cra_s:7.1f}x  ({differ} decisions differ)")


if __name__ == "__main__":
    main()
