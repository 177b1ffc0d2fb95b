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
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cra.curation.candidates import build_candidates
from cra.curation.dedup import cap_domains, deduplicate, effective_cap, stable_order
from cra.curation.plan import PLAN_FORMAT_VERSION, PLAN_KIND, EmptyDatabase, curate_options
from cra.curation.rows import ADAPTERS, Row
from cra.db import transaction
from cra.db.logs import LogAnalysis
from cra.errors import CraError, NotFound, UsageError
from cra.fsutil import now_iso, sha256_file
from cra.workspace import Workspace

CARD_FORMAT_VERSION = 1
DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
FILES = ("train.jsonl", "eval.jsonl", "card.json", "README.md")

Progress = Callable[[str], None]


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


def datasets_dir(workspace: Workspace) -> Path:
    """`training/datasets/` of the workspace."""
    return workspace.training_dir / "datasets"


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


def planned_groups(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """The (adapter, technique) pairs the plan says to train."""
    return [
        (a["name"], t["technique"])
        for a in plan["adapters"]
        if a.get("train")
        for t in a["techniques"]
        if t.get("train")
    ]


def _earlier(conn: Any, root: Path) -> list[tuple[str, Path]]:
    """Registered datasets, oldest first, whose folder exists."""
    out = []
    for row in conn.execute("SELECT id, path FROM training_datasets ORDER BY created_at, id"):
        path = root / row["path"]
        if (path / "train.jsonl").is_file():
            out.append((row["id"], path))
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _replay_row(record: dict[str, Any], dataset_id: str) -> Row:
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
    return Row(
        meta["adapter"],
        meta["technique"],
        meta["task_id"],
        ts,
        meta.get("domain") or meta["repo"],
        "replay",
        fresh,
        text,
    )


def _date_range(rows: list[Row]) -> list[str] | None:
    if not rows:
        return None
    ts = [r.authored_ts for r in rows]
    return [
        datetime.fromtimestamp(min(ts), UTC).isoformat(),
        datetime.fromtimestamp(max(ts), UTC).isoformat(),
    ]


def _tally(rows: list[Row]) -> dict[str, Any]:
    return {
        "rows": len(rows),
        "by_group": dict(Counter("/".join(r.group) for r in rows)),
        "by_source": dict(Counter(r.source for r in rows)),
        "by_repo": dict(Counter(r.record["meta"]["repo"] for r in rows)),
        "by_domain": dict(Counter(r.domain for r in rows)),
        "date_range": _date_range(rows),
        "tasks": len({r.task_id for r in rows}),
    }


def _write_jsonl(path: Path, rows: list[Row]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.record, ensure_ascii=False, sort_keys=True))
            fh.write("\n")


def curate(
    workspace: Workspace,
    plan_path: Path,
    dataset_id: str | None = None,
    *,
    progress: Progress | None = None,
) -> CurateResult:
    """Follow the plan at `plan_path` and write and register dataset `dataset_id`."""
    say = progress or (lambda _msg: None)
    plan = load_plan(plan_path)
    if dataset_id is None:
        dataset_id = "ds-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if not DATASET_ID.match(dataset_id):
        raise UsageError(
            f"invalid dataset ID {dataset_id!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    root = datasets_dir(workspace)
    target = root / dataset_id
    config = workspace.config
    options = curate_options(workspace)
    groups = planned_groups(plan)
    if not groups:
        raise PlanError(f"{plan_path}: the plan trains no adapter", hint="nothing to curate")
    boundary = int(plan["holdout"]["boundary_ts"])
    replay_share = float(plan["replay_share"])
    cap_setting = float(plan["domain_cap"])
    with closing(workspace.raw_db()) as conn, closing(workspace.curated_db()) as curated:
        if (
            target.exists()
            or conn.execute(
                "SELECT 1 FROM training_datasets WHERE id = ?", (dataset_id,)
            ).fetchone()
        ):
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
        candidates = build_candidates(
            logs, groups, options, repos_dir=workspace.repos_dir, curated=curated
        )
        earlier = _earlier(conn, workspace.root)
    filters: list[dict[str, Any]] = []
    rows = candidates.rows
    funnel_in = len(rows)

    # 2. leave what earlier datasets trained on to replay
    say("checking earlier datasets")
    trained: set[tuple[str, str, str]] = set()
    pool: list[tuple[str, dict[str, Any]]] = []
    for ds_id, path in earlier:
        for record in _read_jsonl(path / "train.jsonl"):
            meta = record.get("meta", {})
            trained.add((meta.get("adapter"), meta.get("technique"), meta.get("task_id")))
            pool.append((ds_id, record))
    before = len(rows)
    rows = [r for r in rows if (r.adapter, r.technique, r.task_id) not in trained]
    filters.append(
        {
            "filter": "already in an earlier dataset (replayed instead)",
            "dropped": before - len(rows),
        }
    )

    # 3. split by time
    eval_rows = [r for r in rows if r.authored_ts >= boundary]
    train_rows = [r for r in rows if r.authored_ts < boundary]
    eval_tasks = {r.task_id for r in eval_rows}

    # 4. duplicates
    say(f"deduplicating {len(rows)} rows")
    threshold = config.settings.curate.near_dup_threshold
    eval_rows, train_rows, stats = deduplicate(
        eval_rows,
        train_rows,
        threshold=threshold,
        num_perm=config.settings.curate.minhash_perm,
        shingle_words=config.settings.curate.shingle_words,
    )
    filters += [
        {
            "filter": "exact duplicate",
            "dropped": sum(stats.exact.values()),
            "by_group": dict(stats.exact),
        },
        {
            "filter": f"near-duplicate (MinHash LSH, Jaccard >= {threshold})",
            "dropped": sum(stats.near.values()),
            "by_group": dict(stats.near),
        },
        {
            "filter": "train row duplicating an eval row",
            "dropped": sum(stats.eval_contamination.values()),
            "by_group": dict(stats.eval_contamination),
        },
    ]

    # 5. domain cap, per group and split
    warnings: list[str] = []
    capped: Counter[str] = Counter()
    caps: dict[str, float] = {}

    def apply_cap(split: str, split_rows: list[Row]) -> list[Row]:
        kept: list[Row] = []
        for group in sorted({r.group for r in split_rows}):
            members = [r for r in split_rows if r.group == group]
            domains = {r.domain for r in members}
            cap = effective_cap(cap_setting, len(domains))
            name = f"{split} {'/'.join(group)}"
            caps[name] = cap
            if cap > cap_setting:
                warnings.append(
                    f"{name}: only {len(domains)} domain(s), the {cap_setting:.0%} cap needs "
                    f"{round(1 / cap_setting)}; capped at equal shares ({cap:.0%}) instead"
                )
            members, dropped = cap_domains(members, cap)
            capped.update(dropped)
            kept.extend(members)
        return sorted(kept, key=lambda r: (r.authored_ts, r.task_id, r.adapter, r.technique))

    eval_rows = apply_cap("eval", eval_rows)
    train_rows = apply_cap("train", train_rows)
    cap_filter: dict[str, Any] = {"filter": f"domain cap ({cap_setting:.0%})"}
    filters.append(cap_filter)

    # 6. replay from earlier datasets
    replay: list[Row] = []
    replay_dropped: Counter[str] = Counter()
    replay_of: list[str] = []
    if pool:
        say("drawing replay rows")
        keys = {r.content_key for r in train_rows + eval_rows}
        by_group: dict[tuple[str, str], list[Row]] = {}
        seen_replay: set[str] = set()
        for ds_id, record in pool:
            row = _replay_row(record, ds_id)
            if row.group not in set(groups):
                replay_dropped["adapter not in this plan"] += 1
            elif row.authored_ts >= boundary or row.task_id in eval_tasks:
                replay_dropped["at or after the holdout boundary"] += 1
            elif row.content_key in keys or row.content_key in seen_replay:
                replay_dropped["duplicate"] += 1
            else:
                seen_replay.add(row.content_key)
                by_group.setdefault(row.group, []).append(row)
        for group, members in sorted(by_group.items()):
            fresh = sum(1 for r in train_rows if r.group == group)
            want = round(replay_share * fresh / (1 - replay_share))
            members.sort(key=lambda r: stable_order(r, dataset_id))
            replay.extend(members[:want])
        replay_of = sorted({r.record["meta"]["replay_of"] for r in replay})
    # The cap holds on what is written: replay rows are capped with the fresh ones.
    final_train = apply_cap("train", train_rows + replay) if replay else train_rows
    replay = [r for r in final_train if r.source == "replay"]
    cap_filter.update(dropped=sum(capped.values()), by_domain=dict(capped))
    if not final_train or not eval_rows:
        raise CraError(
            f"the plan's data leaves {len(final_train)} train and {len(eval_rows)} eval rows "
            "after filtering: nothing worth writing",
            hint="run the harness on newer commits, or plan again with `cra train-plan`",
        )
    # The time split, checked on what is about to be written.
    if max(r.authored_ts for r in final_train) >= min(r.authored_ts for r in eval_rows) or (
        {r.task_id for r in final_train} & {r.task_id for r in eval_rows}
    ):
        raise RuntimeError("the time split does not hold: a train row is not older than eval")

    card = {
        "format_version": CARD_FORMAT_VERSION,
        "id": dataset_id,
        "created_at": now_iso(),
        "plan": {
            "path": _rel(Path(plan_path), workspace.root),
            "sha256": sha256_file(Path(plan_path)),
        },
        "holdout": {"boundary": plan["holdout"]["boundary"], "boundary_ts": boundary},
        "formats": {"sft": "conversational prompt-completion", "dpo": "prompt/chosen/rejected"},
        "counts": {
            "candidates": funnel_in,
            "train": _tally(final_train),
            "eval": _tally(eval_rows),
        },
        "filters": filters,
        "skipped_tasks": {k: dict(v) for k, v in candidates.skipped.items()},
        "domain_cap": {"setting": cap_setting, "effective": caps},
        "replay": {
            "share_target": replay_share,
            "share_actual": round(len(replay) / len(final_train), 4) if final_train else 0.0,
            "rows": len(replay),
            "from": replay_of,
            "dropped": dict(replay_dropped),
        },
        "dedup": {
            "threshold": threshold,
            "num_perm": config.settings.curate.minhash_perm,
            "shingle_words": config.settings.curate.shingle_words,
        },
        "warnings": warnings,
    }
    say("writing the dataset")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset_id}.", dir=root))
    try:
        _write_jsonl(staging / "train.jsonl", final_train)
        _write_jsonl(staging / "eval.jsonl", eval_rows)
        hashes = {n: sha256_file(staging / n) for n in ("train.jsonl", "eval.jsonl")}
        card["sha256"] = hashes
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(_readme(card), encoding="utf-8")
        hashes = {n: sha256_file(staging / n) for n in FILES}
        staging.rename(target)  # fails if another run took the ID meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts = {
        "train": len(final_train),
        "eval": len(eval_rows),
        "replay": len(replay),
        "by_group": {
            "/".join(g): {
                "train": sum(1 for r in final_train if r.group == g),
                "eval": sum(1 for r in eval_rows if r.group == g),
            }
            for g in sorted({r.group for r in final_train + eval_rows})
        },
    }
    with closing(workspace.raw_db()) as conn:
        try:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO training_datasets (id, plan_path, path, counts, sha256, "
                    "replay_of, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        dataset_id,
                        _rel(Path(plan_path), workspace.root),
                        _rel(target, workspace.root),
                        json.dumps(counts),
                        json.dumps(hashes),
                        json.dumps(replay_of),
                        now_iso(),
                    ),
                )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return CurateResult(dataset_id, target, card)


def _rel(path: Path, root: Path) -> str:
    path = Path(path).absolute()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _readme(card: dict[str, Any]) -> str:
    train, held = card["counts"]["train"], card["counts"]["eval"]
    lines = [
        f"# Dataset {card['id']}",
        "",
        f"Written {card['created_at']} from plan `{card['plan']['path']}`.",
        f"Train: {train['rows']} rows ({train['tasks']} tasks, {train['date_range']}); "
        f"eval: {held['rows']} rows ({held['tasks']} tasks, {held['date_range']}), all authored "
        f"on or after {card['holdout']['boundary']}.",
        f"Replay: {card['replay']['rows']} rows ({card['replay']['share_actual']:.0%}) from "
        f"{', '.join(card['replay']['from']) or 'no earlier dataset'}.",
        "",
        "| filter | rows dropped |",
        "| --- | --- |",
        *(f"| {f['filter']} | {f['dropped']} |" for f in card["filters"]),
        "",
        "Rows per adapter/technique (train): "
        + ", ".join(f"{k} {v}" for k, v in sorted(train["by_group"].items())),
        "",
        "SFT rows are conversational prompt-completion (loss on the completion only); DPO rows "
        "are prompt/chosen/rejected. `meta` on every row names its adapter, technique, task, "
        "repository, commit, authored date, source, domain and scores. sha256 of each file: "
        "card.json.",
    ]
    return "\n".join(lines) + "\n"


def show_dataset(workspace: Workspace, dataset_id: str) -> dict[str, Any]:
    """The card of a registered dataset."""
    path = datasets_dir(workspace) / dataset_id / "card.json"
    if not path.is_file():
        raise NotFound(f"no dataset {dataset_id!r}", hint="list them under training/datasets/")
    return json.loads(path.read_text(encoding="utf-8"))


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
