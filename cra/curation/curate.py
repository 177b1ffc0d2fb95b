"""`cra curate-data`: follow a training plan and write a dataset.

`training/datasets/ID/` holds `train.jsonl`, `eval.jsonl`, `card.json` and a short
`README.md`. The steps, each counting what it drops:
1. candidate rows for the plan's adapters and techniques (see :mod:`cra.curation.rows`);
2. rows whose (adapter, technique, task) an earlier dataset already trained on are left
   to replay (accumulate, never repeat);
3. the time split at the plan's holdout boundary: a task authored at or after it is
   eval, before it train, so every eval row is newer than every train row and no task
   is on both sides;
4. exact and near-duplicate removal, within and across the splits;
5. the domain cap, per (adapter, technique) and split;
6. replay: `replay_share` of the train rows drawn from earlier datasets' train rows
   (older than the boundary, not an eval task, not a duplicate); earlier datasets are
   read, never modified.
The dataset is written to a temporary folder, renamed into place, and registered in
`training_datasets` with its plan, counts and the sha256 of every file. An existing ID
is refused.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cra.config import CurateSettings
from cra.curation.candidates import build_candidates
from cra.curation.card import CARD_FORMAT_VERSION, ReplaySummary, readme, registered_counts, tally
from cra.curation.plan import PLAN_FORMAT_VERSION, PLAN_KIND, EmptyDatabase, curate_options
from cra.curation.ranker import dedup_texts
from cra.curation.rows import ADAPTERS, Candidates, Row
from cra.curation.steps import (
    Deduplicate,
    DomainCap,
    DrawReplay,
    LeaveToReplay,
    Progress,
    Splits,
    Step,
    TimeSplit,
    run_steps,
)
from cra.datasets_store import NewDataset, dataset_exists, insert_dataset, registered_paths
from cra.db import transaction
from cra.db.logs import LogAnalysis
from cra.errors import CraError, UsageError
from cra.fsutil import now_iso, sha256_file
from cra.workspace import Workspace

Group = tuple[str, str]
DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
FILES = ("train.jsonl", "eval.jsonl", "card.json", "README.md")


class PlanError(CraError, ValueError):
    """A plan file cannot be followed: unreadable, another format, or unknown names."""


class DatasetExists(CraError, FileExistsError):
    """A dataset with this ID exists already; datasets are never overwritten."""


@dataclass(frozen=True)
class CurateResult:
    """What curate-data wrote."""

    dataset_id: str
    path: Path
    card: dict[str, Any]


def load_plan(path: Path) -> dict[str, Any]:
    """Read and check a plan file; raise PlanError naming what is wrong."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"no plan file {path}", hint="write one with `cra train-plan`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a readable JSON plan: {exc}") from exc
    if not isinstance(plan, dict) or plan.get("kind") != PLAN_KIND:
        raise PlanError(f"{path}: not a cra training plan", hint="write one with `cra train-plan`")
    version = plan.get("format_version")
    if version != PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{path}: plan format version {version!r}, this cra reads version "
            f"{PLAN_FORMAT_VERSION}",
            hint="write a fresh plan with `cra train-plan`",
        )
    holdout = plan.get("holdout") or {}
    if not isinstance(holdout.get("boundary_ts"), int):
        raise PlanError(f"{path}: the plan has no holdout boundary")
    replay, cap = plan.get("replay_share"), plan.get("domain_cap")
    if not isinstance(replay, int | float) or not 0.1 <= replay <= 0.2:
        raise PlanError(f"{path}: replay_share must be between 0.1 and 0.2, got {replay!r}")
    if not isinstance(cap, int | float) or not 0 < cap <= 1:
        raise PlanError(f"{path}: domain_cap must be in (0, 1], got {cap!r}")
    for entry in plan.get("adapters") or []:
        name = entry.get("name")
        if name not in ADAPTERS:
            raise PlanError(
                f"{path}: unknown adapter {name!r}", hint=f"known adapters: {', '.join(ADAPTERS)}"
            )
        for technique in entry.get("techniques") or []:
            if technique.get("technique") not in ADAPTERS[name]:
                raise PlanError(
                    f"{path}: adapter {name!r} has no technique {technique.get('technique')!r}",
                    hint=f"{name} takes {', '.join(ADAPTERS[name])}",
                )
    return plan


def newest_plan(planning_dir: Path) -> Path:
    """The newest plan file (`*.json`, by modification time, then name) in the workspace's
    `planning_dir`; PlanError saying to run `cra train-plan` when there is none."""
    found = sorted(
        (p for p in planning_dir.glob("*.json") if p.is_file()),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
    )
    if not found:
        raise PlanError(
            f"no training plan in {planning_dir}: run `cra train-plan` first (or pass --plan)"
        )
    return found[-1]


def planned_groups(plan: dict[str, Any]) -> list[Group]:
    """The (adapter, technique) pairs the plan says to train."""
    return [
        (a["name"], t["technique"])
        for a in plan["adapters"]
        if a.get("train")
        for t in a["techniques"]
        if t.get("train")
    ]


def _replay_row(record: dict[str, Any], dataset_id: str) -> Row:
    """A train row of an earlier dataset as a replay candidate."""
    meta = dict(record["meta"])
    meta["replay_of"] = dataset_id
    meta["replay_source"] = meta.get("replay_source", meta.get("source"))
    meta["source"] = "replay"
    fresh = {**record, "meta": meta}
    ts = int(datetime.fromisoformat(meta["authored_at"]).timestamp())
    text = " ".join(
        m["content"]
        for part in ("prompt", "completion", "chosen", "rejected")
        for m in record.get(part, [])
        if m.get("role") != "system"
    )
    context = ""
    if "ranker" in record:
        text, context = dedup_texts(record)
    domain = meta.get("domain") or meta["repo"]
    task_id = meta["task_id"]
    group = (meta["adapter"], meta["technique"])
    return Row(*group, task_id, ts, domain, "replay", fresh, text, context)


@dataclass(frozen=True)
class _Earlier:
    """What earlier datasets trained on, and their train rows as replay candidates."""

    trained: dict[tuple[str, str, str], str]  # (adapter, technique, task) -> first dataset
    pool: list[Row]


def _read_earlier(datasets: list[tuple[str, Path]]) -> _Earlier:
    trained: dict[tuple[str, str, str], str] = {}
    pool: list[Row] = []
    for ds_id, path in datasets:
        for record in _read_jsonl(path / "train.jsonl"):
            meta = record.get("meta", {})
            key = (meta.get("adapter"), meta.get("technique"), meta.get("task_id"))
            trained.setdefault(key, ds_id)
            pool.append(_replay_row(record, ds_id))
    return _Earlier(trained, pool)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _write_jsonl(path: Path, rows: tuple[Row, ...]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.record, ensure_ascii=False, sort_keys=True))
            fh.write("\n")


def _checked_id(dataset_id: str | None) -> str:
    """`dataset_id`, or a fresh timestamped one; UsageError when it is not a valid ID."""
    if dataset_id is None:
        dataset_id = "ds-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if not DATASET_ID.match(dataset_id):
        raise UsageError(
            f"invalid dataset ID {dataset_id!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return dataset_id


def _read_logs(
    workspace: Workspace, dataset_id: str, groups: list[Group], say: Progress
) -> tuple[Candidates, list[tuple[str, Path]]]:
    """The candidate rows of `groups` and the earlier datasets (oldest first); refuses an
    existing ID and a database without tasks."""
    target = workspace.datasets_dir / dataset_id
    with closing(workspace.raw_db()) as conn, closing(workspace.curated_db()) as curated:
        if target.exists() or dataset_exists(conn, dataset_id):
            raise DatasetExists(
                f"dataset {dataset_id!r} exists already",
                hint="datasets are never overwritten: choose another --out ID",
            )
        logs = LogAnalysis(conn)
        if logs.counts()["tasks"] == 0:
            raise EmptyDatabase(
                f"{workspace.raw_db_path} holds no tasks: there is nothing to curate",
                hint="mine and run the harness first",
            )
        say("reading the logs")
        options = curate_options(workspace.config.settings.curate)
        candidates = build_candidates(
            logs, groups, options, repos_dir=workspace.repos_dir, curated=curated
        )
        earlier = [
            (ds_id, workspace.root / path)
            for ds_id, path in registered_paths(conn)
            if (workspace.root / path / "train.jsonl").is_file()
        ]
    return candidates, earlier


@dataclass(frozen=True)
class _Pipeline:
    """The steps of one curation run, kept for the funnel they count."""

    leave: LeaveToReplay
    split: TimeSplit
    dedup: Deduplicate
    cap: DomainCap
    replay: DrawReplay

    def steps(self) -> list[Step]:
        """The steps in the order they run."""
        return [self.leave, self.split, self.dedup, self.cap, self.replay]

    def filters(self) -> list[dict[str, Any]]:
        """The card's funnel: what each filter dropped."""
        lines = self.leave.funnel() + self.dedup.funnel() + self.cap.funnel()
        return [line.as_dict() for line in lines]


def _pipeline(
    plan: dict[str, Any], dataset_id: str, earlier: _Earlier, settings: CurateSettings
) -> _Pipeline:
    boundary = int(plan["holdout"]["boundary_ts"])
    cap = DomainCap(float(plan["domain_cap"]))
    return _Pipeline(
        leave=LeaveToReplay(earlier.trained),
        split=TimeSplit(boundary),
        dedup=Deduplicate(
            threshold=settings.near_dup_threshold,
            num_perm=settings.minhash_perm,
            shingle_words=settings.shingle_words,
        ),
        cap=cap,
        replay=DrawReplay(
            earlier.pool,
            groups=set(planned_groups(plan)),
            boundary=boundary,
            share=float(plan["replay_share"]),
            salt=dataset_id,
            cap=cap,
        ),
    )


def _check_split(splits: Splits, leave: LeaveToReplay) -> None:
    """Something worth writing (else why not, naming the earlier datasets that already
    hold rows), and the time split holding on what is about to be."""
    train, held = splits.train, splits.eval
    if not train or not held:
        why = ""
        if leave.by_dataset:
            n = sum(leave.by_dataset.values())
            why = (
                f"; {n} rows were left out because they already sit in earlier dataset(s) "
                f"{', '.join(sorted(leave.by_dataset))} (they are only replayed, never repeated)"
            )
        raise CraError(
            f"the plan's data leaves {len(train)} train and {len(held)} eval rows "
            f"after filtering: nothing worth writing{why}",
            hint="run the harness on newer commits (new tasks), then plan again with "
            "`cra train-plan`",
        )
    newest_train = max(r.authored_ts for r in train)
    if newest_train >= min(r.authored_ts for r in held) or (
        {r.task_id for r in train} & {r.task_id for r in held}
    ):
        raise RuntimeError("the time split does not hold: a train row is not older than eval")


def _card(
    workspace: Workspace,
    plan_path: Path,
    plan: dict[str, Any],
    dataset_id: str,
    candidates: Candidates,
    run: _Pipeline,
    splits: Splits,
) -> dict[str, Any]:
    """The dataset card of this run (its files' sha256 are added once written)."""
    settings = workspace.config.settings.curate
    replay = ReplaySummary(
        share_target=float(plan["replay_share"]),
        rows=sum(1 for r in splits.train if r.source == "replay"),
        train_rows=len(splits.train),
        sources=run.replay.sources,
        dropped=dict(run.replay.dropped),
    )
    return {
        "format_version": CARD_FORMAT_VERSION,
        "id": dataset_id,
        "created_at": now_iso(),
        "plan": {"path": _rel(plan_path, workspace.root), "sha256": sha256_file(plan_path)},
        "holdout": {"boundary": plan["holdout"]["boundary"], "boundary_ts": run.split.boundary},
        "formats": {
            "sft": "conversational prompt-completion",
            "dpo": "prompt/chosen/rejected",
            "ranker": "query/positives/negatives at the parent snapshot (cra.ranker_rows)",
        },
        "counts": {
            "candidates": len(candidates.rows),
            "train": tally(splits.train),
            "eval": tally(splits.eval),
        },
        "filters": run.filters(),
        "skipped_tasks": {k: dict(v) for k, v in candidates.skipped.items()},
        "domain_cap": {"setting": run.cap.setting, "effective": run.cap.effective},
        "replay": replay.as_dict(),
        "dedup": {
            "threshold": settings.near_dup_threshold,
            "num_perm": settings.minhash_perm,
            "shingle_words": settings.shingle_words,
        },
        "warnings": run.cap.warnings,
    }


def _write(root: Path, dataset_id: str, splits: Splits, card: dict[str, Any]) -> dict[str, str]:
    """Write the dataset into a temporary folder and rename it into place; return the
    sha256 of every file."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset_id}.", dir=root))
    try:
        _write_jsonl(staging / "train.jsonl", splits.train)
        _write_jsonl(staging / "eval.jsonl", splits.eval)
        card["sha256"] = {n: sha256_file(staging / n) for n in ("train.jsonl", "eval.jsonl")}
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        card_sha256 = sha256_file(staging / "card.json")
        (staging / "README.md").write_text(readme(card, card_sha256), encoding="utf-8")
        hashes = {n: sha256_file(staging / n) for n in FILES}
        staging.rename(root / dataset_id)  # fails if another run took the ID meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return hashes


def _register(workspace: Workspace, new: NewDataset, target: Path) -> None:
    """Record the dataset in `training_datasets`; remove its folder if that fails."""
    with closing(workspace.raw_db()) as conn:
        try:
            with transaction(conn):
                insert_dataset(conn, new)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise


def curate(
    workspace: Workspace,
    plan_path: Path,
    dataset_id: str | None = None,
    *,
    progress: Progress | None = None,
) -> CurateResult:
    """Follow the plan at `plan_path` and write and register dataset `dataset_id`."""
    say = progress or _quiet
    plan_path = Path(plan_path)
    plan = load_plan(plan_path)
    dataset_id = _checked_id(dataset_id)
    groups = planned_groups(plan)
    if not groups:
        raise PlanError(f"{plan_path}: the plan trains no adapter", hint="nothing to curate")
    candidates, datasets = _read_logs(workspace, dataset_id, groups, say)
    say("checking earlier datasets")
    earlier = _read_earlier(datasets)
    run = _pipeline(plan, dataset_id, earlier, workspace.config.settings.curate)
    splits = run_steps(run.steps(), Splits(pending=tuple(candidates.rows)), say)
    _check_split(splits, run.leave)
    card = _card(workspace, plan_path, plan, dataset_id, candidates, run, splits)
    say("writing the dataset")
    root = workspace.datasets_dir
    hashes = _write(root, dataset_id, splits, card)
    target = root / dataset_id
    new = NewDataset(
        id=dataset_id,
        plan_path=_rel(plan_path, workspace.root),
        path=_rel(target, workspace.root),
        counts=registered_counts(splits.train, splits.eval),
        sha256=hashes,
        replay_of=run.replay.sources,
        created_at=now_iso(),
    )
    _register(workspace, new, target)
    return CurateResult(dataset_id, target, card)


def _quiet(_message: str) -> None:
    """Progress that says nothing."""


def _rel(path: Path, root: Path) -> str:
    path = Path(path).absolute()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


COLUMNS = {"sft": ["prompt", "completion"], "dpo": ["prompt", "chosen", "rejected"]}
"""The columns trl's trainers read, per technique."""


def load_rows(dataset_dir: Path, split: str, adapter: str, technique: str) -> Any:
    """One split's rows of one adapter and technique as a `datasets.Dataset` that trl's
    SFTTrainer (technique "sft") or DPOTrainer ("dpo") takes as it is.

    `train.jsonl` holds both row shapes, so a plain `load_dataset("json")` gives every
    row the other shape's columns as nulls, which trl's format detection trips on; this
    keeps the technique's columns only (`meta` stays in the JSONL)."""
    import datasets

    if split not in ("train", "eval"):
        raise UsageError(f"split must be train or eval, got {split!r}")
    if technique not in COLUMNS:
        raise UsageError(f"technique must be sft or dpo, got {technique!r}")
    data = datasets.load_dataset(
        "json", data_files=str(Path(dataset_dir) / f"{split}.jsonl"), split="train"
    )
    data = data.filter(
        lambda r: r["meta"]["adapter"] == adapter and r["meta"]["technique"] == technique
    )
    return data.select_columns(COLUMNS[technique])
