"""The learned scope ranker on real histories, against BM25 and a frequency prior measured
in the same run on the same tasks.

Each repository of a workspace (packed and mined) is split by time: the newest 20% of its
tasks (qualified commits) are the holdout, and every ranker row authored before them
(tested and untested: commits dropped only for their tests) may train. ONE ranker is
trained on the pooled train splits through the product's code (`cra.ranker.train.
fit_ranker`, `[ranker]` settings unless overridden), then the holdout is scored: per
repository and pooled, recall@1/@5 and MRR of the prior, BM25 and the ranker (and the
ratio ranker/BM25), with the noise floor (two standard errors of the paired per-task
difference in recall@1); the same stratified by lexical overlap (the task text names a
gold file's path stem or one of its top-level definitions, or not); training seconds
(wall and CPU); the latency of reranking 50 candidates with file embeddings cached;
the baseline planner's mean plan alignment on the holdout commits planned from BM25's
files and from the ranker's (through `run_harness`, raw.db restored afterwards).
`--loro` adds leave-one-repository-out (train on the others, evaluate on the one).
Latency is timed for both runtimes of the same trained encoder: sentence-transformers on
torch (the baseline) and ONNX Runtime (what a saved version serves with), printed with
their ratio; `--latency-only` times only that, for `--ranker DIR` (a version folder) or
the base encoder (same architecture, same cost), without training.

Usage: python benchmarks/bench_scope_ranker.py --workspace WS [--loro] [--json]
       python benchmarks/bench_scope_ranker.py --workspace WS --latency-only [--ranker DIR]
       python benchmarks/bench_scope_ranker.py --bundles ../shared/real-repos/ [--keep DIR]
Indexing writes its cache to the workspace's curated.db: point it at a copy to keep one
untouched. Overrides: --epochs, --hard-negatives, --candidates, --batch-size,
--learning-rate, --max-seq-length, --tested-only (train on tested rows only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from cra.db.repos import repo_names
from cra.harness.mine import mine_repo
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness
from cra.ranker.base import load_encoder, ranker_base_dir
from cra.ranker.evaluate import (
    ChangeHistory,
    Scoring,
    mix_label,
    score_rows,
    workspace_snapshots,
)
from cra.ranker.history import Snapshots, history_rows, holdout_split
from cra.ranker.metrics import mean
from cra.ranker.model import ENCODER_DIR, Mix, Ranker, load_ranker
from cra.ranker.pipeline import SnapshotRanker
from cra.ranker.runtime import OnnxEncoder, export_encoder, onnx_encoder
from cra.ranker.train import RankerTrainOptions, fit_ranker, ranker_hyperparams
from cra.ranker_rows import RankerRow
from cra.repos.pack import PackOptions, pack
from cra.workspace import Workspace, init_workspace, open_workspace

HOLDOUT = 0.2
SHOWN = ("recall@1", "recall@5", "mrr")
SYSTEMS = ("prior", "bm25", "ranker")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--workspace", type=Path, help="a workspace with repos packed and mined")
    src.add_argument("--bundles", type=Path, help="a folder of *.bundle to pack and mine")
    ap.add_argument("--keep", type=Path, help="with --bundles: build the workspace here")
    ap.add_argument("--loro", action="store_true", help="also leave-one-repository-out")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--tested-only", action="store_true", help="train on tested rows only")
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="no training: time reranking with --ranker (a version folder) or the base",
    )
    ap.add_argument("--ranker", type=Path, help="with --latency-only: a ranker version folder")
    for flag, kind in (
        ("epochs", float),
        ("hard-negatives", int),
        ("candidates", int),
        ("batch-size", int),
        ("learning-rate", float),
        ("max-seq-length", int),
    ):
        ap.add_argument(f"--{flag}", type=kind, default=None)
    return ap.parse_args()


def _build(bundles: Path, root: Path) -> Workspace:
    """Pack (single environment) and mine every bundle with defaults into `root`."""
    workspace = init_workspace(root).workspace
    with tempfile.TemporaryDirectory() as tmp:
        for bundle in sorted(bundles.glob("*.bundle")):
            source = Path(tmp) / bundle.stem
            subprocess.run(["git", "clone", "-q", str(bundle), str(source)], check=True)
            options = PackOptions(name=bundle.stem, single_env=True)
            pack(workspace, str(source), options, echo=lambda _m: None)
            mine_repo(workspace, bundle.stem)
    return workspace


def _hyperparams(workspace: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    settings = workspace.config.settings.ranker
    changes = {
        "hard_negatives": args.hard_negatives,
        "candidates": args.candidates,
        "max_seq_length": args.max_seq_length,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v})
    options = RankerTrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate
    )
    return ranker_hyperparams(settings, options, HOLDOUT)


def named(snaps: Snapshots, row: RankerRow) -> bool:
    """Whether the task text names a gold file: its path stem (the package for an
    `__init__.py`) or one of its top-level definitions, as a whole word, any case."""
    words = {w.lower() for w in WORD.findall(row.query)}
    view = snaps.view(row.repo, row.parent_sha)
    for path in row.positives:
        parts = path.removesuffix(".py").split("/")
        names = {parts[-2] if parts[-1] == "__init__" and len(parts) > 1 else parts[-1]}
        parsed = view.index.parsed.get(path)
        if parsed is not None:
            names |= {s.name for s in parsed.symbols if "." not in s.qualname}
        if {n.lower() for n in names if len(n) > 2} & words:
            return True
    return False


def _figures(scored: Sequence[Scoring], mix: Mix) -> dict[str, Any]:
    """Mean metrics of each system, the ratio ranker/BM25 and the recall@1 noise floor."""
    per = {
        "prior": [s.prior_only() for s in scored],
        "bm25": [s.bm25_only() for s in scored],
        "ranker": [s.at(mix) for s in scored],
    }
    out: dict[str, Any] = {"n": len(scored), **{k: mean(v) for k, v in per.items()}}
    if not scored:
        return out
    out["ratio"] = {
        m: (out["ranker"][m] / out["bm25"][m]) if out["bm25"][m] else math.inf for m in SHOWN
    }
    diffs = [r["recall@1"] - b["recall@1"] for r, b in zip(per["ranker"], per["bm25"], strict=True)]
    sd = statistics.pstdev(diffs) if len(diffs) > 1 else 0.0
    out["noise_r1"] = 2 * sd / math.sqrt(len(diffs))
    return out


def _table(title: str, groups: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = "".join(f" {s[:6]:>6} {'R@1':>5} {'R@5':>5} {'MRR':>5}" for s in SYSTEMS)
    print(f"{'group':<22}{'n':>4}{head}   ranker/BM25 R@1  R@5  MRR  noise(R@1)")
    for name, fig in groups.items():
        if not fig["n"]:
            print(f"{name:<22}{0:>4}")
            continue
        cells = "".join(
            f" {'':>6} " + " ".join(f"{fig[s][m]:5.3f}" for m in SHOWN) for s in SYSTEMS
        )
        ratio = " ".join(f"{fig['ratio'][m]:5.2f}" for m in SHOWN)
        print(f"{name:<22}{fig['n']:>4}{cells}   {ratio:>21}  {fig['noise_r1']:.3f}")


def _groups(
    scored: Sequence[Scoring], mix: Mix, key: Any, names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    return {n: _figures([s for s in scored if key(s) == n], mix) for n in names}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _train(
    snaps: Snapshots, rows: Sequence[RankerRow], hp: dict[str, Any], base: Path
) -> tuple[Any, dict[str, Any]]:
    wall, cpu = time.perf_counter(), time.process_time()
    fitted = fit_ranker(snaps, rows, hp, base, echo=_say)
    seconds = {
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "fit_s": fitted.metrics["seconds"],
        "steps": fitted.metrics["steps"],
        "pairs": fitted.metrics["pairs"],
        "mix": mix_label(fitted.ranker.mix),
    }
    return fitted.ranker, seconds


def _runtimes(ranker: Ranker, folder: Path) -> dict[str, Ranker]:
    """The ranker as trained (sentence-transformers on torch) and, where the export can be
    made, the same encoder through ONNX Runtime (what a saved version serves with)."""
    out = {"torch": ranker}
    if export_encoder(ranker.encoder, folder) is not None:
        fast = onnx_encoder(ranker.encoder, folder)
        out["onnx"] = dataclasses.replace(ranker, encoder=fast, _cache={})
    return out


def _latency(
    ranker: Ranker, snaps: Snapshots, held: Sequence[RankerRow], rows: Sequence[RankerRow]
) -> dict[str, Any]:
    """ms per rerank of 50 BM25 candidates with the recency prior, file embeddings cached
    (a warm-up pass first), for each runtime, timed in turn on each task; the share of
    tasks where ONNX Runtime ranks the same top 5 as torch."""
    earlier = ChangeHistory(rows)
    cands = [
        (r.query, snaps.view(r.repo, r.parent_sha).candidates(r.query, 50), earlier.before(r))
        for r in held
    ]
    with tempfile.TemporaryDirectory(prefix="cra-bench-onnx-") as tmp:
        rankers = _runtimes(ranker, Path(tmp))
        top: dict[str, list[list[str]]] = {name: [] for name in rankers}
        for name, each in rankers.items():
            for query, cs, changes in cands:
                top[name].append([s.path for s in each.rerank(query, cs, changes)[:5]])
        times: dict[str, list[float]] = {name: [] for name in rankers}
        for query, cs, changes in cands:
            for name, each in rankers.items():
                started = time.perf_counter()
                each.rerank(query, cs, changes)
                times[name].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {name: _percentiles(ts) for name, ts in times.items()}
    if "onnx" in out:
        out["ratio_p50"] = out["onnx"]["p50_ms"] / out["torch"]["p50_ms"]
        same = [a == b for a, b in zip(top["torch"], top["onnx"], strict=True)]
        out["same_top5"] = sum(same) / max(len(same), 1)
    return out


def _percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50_ms": times[len(times) // 2], "p95_ms": times[int(len(times) * 0.95)]}


def _base_ranker(base: Path, hp: dict[str, Any]) -> Ranker:
    """The untrained base encoder in the benchmark's usual mix: a trained version has the
    same architecture, so the same cost per query."""
    encoder = load_encoder(base, max_seq_length=hp["max_seq_length"])
    return Ranker(encoder, 0.6, prior_weight=0.2, half_life=10.0)


def latency_only(workspace: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """Only the latency figures, for `--ranker` (a version folder) or the base encoder."""
    hp = _hyperparams(workspace, args)
    base = ranker_base_dir(workspace.config.settings.ranker.base, workspace.root)
    ranker = load_ranker(args.ranker) if args.ranker else _base_ranker(base, hp)
    if isinstance(ranker.encoder, OnnxEncoder):
        torch_encoder = load_encoder(
            args.ranker / ENCODER_DIR, max_seq_length=ranker.encoder.max_seq_length
        )
        ranker = dataclasses.replace(ranker, encoder=torch_encoder)
    with closing(workspace.raw_db()) as raw, closing(workspace.curated_db()) as curated:
        repos = repo_names(raw)
        snaps = workspace_snapshots(workspace, curated, repos)
        rows = history_rows(raw, snaps, repos, negatives=10, untested=not args.tested_only)
        _, held = holdout_split(rows, HOLDOUT)
        return {"tasks": len(held), "latency": _latency(ranker, snaps, held, rows)}


def _loro(
    snaps: Snapshots,
    rows: Sequence[RankerRow],
    train: Sequence[RankerRow],
    held: Sequence[RankerRow],
    hp: dict[str, Any],
    base: Path,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for repo in sorted({r.repo for r in held}):
        ranker, _ = _train(snaps, [r for r in train if r.repo != repo], hp, base)
        mine = [r for r in held if r.repo == repo]
        scored = score_rows(ranker, snaps, mine, rows, candidates=hp["candidates"])
        out[repo] = _figures(scored, ranker.mix)
    fair = [f for f in out.values() if f["n"]]
    out["mean over repos"] = {
        "n": sum(f["n"] for f in fair),
        **{s: {m: statistics.fmean(f[s][m] for f in fair) for m in SHOWN} for s in SYSTEMS},
    }
    avg = out["mean over repos"]
    avg["ratio"] = {m: avg["ranker"][m] / avg["bm25"][m] for m in SHOWN}
    avg["noise_r1"] = math.nan
    return out


def _copy_db(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _harness_alignments(
    workspace: Workspace, since: dict[str, datetime], ranker: SnapshotRanker | None
) -> list[float]:
    """The baseline planner's alignment on each repository's commits from `since` on, as
    `cra harness run --no-validate` records them; raw.db is restored afterwards."""
    saved = workspace.raw_db_path.with_suffix(".bench-saved")
    _copy_db(workspace.raw_db_path, saved)
    try:
        out: list[float] = []
        for repo, start in sorted(since.items()):
            options = RunOptions(planner="baseline", since=start)
            out += run_harness(workspace, repo, options, ranker=ranker).alignments
        return out
    finally:
        _copy_db(saved, workspace.raw_db_path)
        saved.unlink()


def _plan_alignment(
    workspace: Workspace, held: Sequence[RankerRow], ranker: Ranker, candidates: int
) -> dict[str, float]:
    """Mean plan alignment of the baseline planner on the holdout period, planned from
    BM25's files and from the ranker's reranking of them (the harness's own path)."""
    since: dict[str, datetime] = {}
    for row in held:
        start = datetime.fromisoformat(row.authored_at)
        since[row.repo] = min(since.get(row.repo, start), start)
    plain = _harness_alignments(workspace, since, None)
    learned = SnapshotRanker(ranker, "scope-ranker", 0, candidates)
    reranked = _harness_alignments(workspace, since, learned)
    bm25, mine = statistics.fmean(plain or [0.0]), statistics.fmean(reranked or [0.0])
    return {
        "plans": len(plain),
        "bm25": bm25,
        "ranker": mine,
        "ratio": mine / bm25 if bm25 else math.inf,
    }


def run(workspace: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the benchmark, printed as tables unless --json."""
    hp = _hyperparams(workspace, args)
    base = ranker_base_dir(workspace.config.settings.ranker.base, workspace.root)
    with closing(workspace.raw_db()) as raw, closing(workspace.curated_db()) as curated:
        repos = repo_names(raw)
        snaps = workspace_snapshots(workspace, curated, repos)
        started = time.perf_counter()
        rows = history_rows(raw, snaps, repos, negatives=10, untested=not args.tested_only)
        rows_s = round(time.perf_counter() - started, 1)
        train, held = holdout_split(rows, HOLDOUT)
        ranker, seconds = _train(snaps, train, hp, base)
        scored = score_rows(ranker, snaps, held, rows, candidates=hp["candidates"])
        overlap = {s.row.task_id: named(snaps, s.row) for s in scored}
        w = ranker.mix
        result: dict[str, Any] = {
            "hyperparams": hp,
            "rows": {
                "tested": sum(r.kind == "tested" for r in rows),
                "untested": sum(r.kind == "untested" for r in rows),
                "train": len(train),
                "holdout": len(held),
                "build_s": rows_s,
            },
            "training": seconds,
            "repos": {
                **_groups(scored, w, lambda s: s.row.repo, repos),
                "pooled": _figures(scored, w),
            },
            "overlap": _groups(
                scored,
                w,
                lambda s: "names a gold file" if overlap[s.row.task_id] else "names none",
                ("names a gold file", "names none"),
            ),
            "latency": _latency(ranker, snaps, held, rows),
        }
        if args.loro:
            result["loro"] = _loro(snaps, rows, train, held, hp, base)
    result["plan_alignment"] = _plan_alignment(workspace, held, ranker, hp["candidates"])
    return result


def _print(result: dict[str, Any]) -> None:
    hp, r, t, lat = result["hyperparams"], result["rows"], result["training"], result["latency"]
    print(
        f"\nrows: {r['tested']} tested + {r['untested']} untested ({r['build_s']} s); "
        f"train {r['train']}, holdout {r['holdout']} (newest {HOLDOUT:.0%} of each repo's tasks)"
    )
    print(
        f"hyperparams: epochs {hp['epochs']}, batch {hp['batch_size']}, lr "
        f"{hp['learning_rate']}, hard negatives {hp['hard_negatives']}, candidates "
        f"{hp['candidates']}, max_seq_length {hp['max_seq_length']}"
    )
    _table("holdout per repository and pooled", result["repos"])
    _table("holdout by lexical overlap", result["overlap"])
    if "loro" in result:
        _table("leave-one-repository-out (trained on the other repositories)", result["loro"])
    print(
        f"\ntraining: {t['wall_s']} s wall, {t['cpu_s']} s CPU ({t['pairs']} pairs, "
        f"{t['steps']} steps, encoder fit {t['fit_s']} s); mix: {t['mix']}"
    )
    _print_latency(lat)
    plan = result["plan_alignment"]
    print(
        f"baseline planner on the holdout commits ({plan['plans']} plans each): mean "
        f"alignment {plan['bm25']:.3f} with BM25, {plan['ranker']:.3f} reranked "
        f"(ratio {plan['ratio']:.2f})"
    )


def _print_latency(lat: dict[str, Any]) -> None:
    for name in ("torch", "onnx"):
        if name in lat:
            print(
                f"rerank 50 candidates (embeddings cached), {name}: p50 "
                f"{lat[name]['p50_ms']:.1f} ms, p95 {lat[name]['p95_ms']:.1f} ms"
            )
    if "ratio_p50" in lat:
        print(
            f"onnx/torch p50 ratio {lat['ratio_p50']:.2f}; same top 5 on "
            f"{lat['same_top5']:.1%} of the tasks"
        )


def main() -> None:
    args = _args()
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    if args.bundles:
        root = args.keep or Path(tempfile.mkdtemp(prefix="cra-bench-ranker-")) / "ws"
        workspace = _build(args.bundles, root)
    else:
        workspace = open_workspace(args.workspace)
    if args.latency_only:
        result = latency_only(workspace, args)
        if not args.json:
            print(f"{result['tasks']} holdout tasks")
            _print_latency(result["latency"])
            return
    else:
        result = run(workspace, args)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        _print(result)


if __name__ == "__main__":
    main()
