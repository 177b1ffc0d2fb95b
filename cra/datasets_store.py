"""The dataset store: curated datasets as `cra curate-data` registers them, read back for
training and eval. It owns the `training_datasets` table; every statement on it is here.

A dataset is a row of `training_datasets` and a folder `training/datasets/ID/` with
`train.jsonl`, `eval.jsonl` (the chronological holdout) and `card.json`. Files are checked
against the sha256 recorded at registration before any row is used.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.errors import ChecksumMismatch, NotFound, UsageError
from cra.fsutil import sha256_file

METHODS = ("sft", "dpo")
"""The techniques of chat rows, which `read_rows` returns."""
RANKER_TECHNIQUE = "ranker"
"""The technique of a scope ranker's rows: not chat rows; `cra.ranker_rows` reads them."""
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its id, folder and the sha256 of each file."""

    id: str
    path: Path
    sha256: dict[str, str]

    def split_path(self, split: str) -> Path:
        """The JSONL file of `split` (train or eval)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.path / f"{split}.jsonl"

    def holdout_key(self) -> str:
        """What identifies the eval split: the dataset id and its file's sha256."""
        return f"{self.id}:{self.sha256.get('eval.jsonl', '')[:16]}"


def get_dataset(conn: sqlite3.Connection, root: Path, dataset_id: str) -> Dataset:
    """The registered dataset `dataset_id`; NotFound when there is none."""
    row = conn.execute(
        "SELECT id, path, sha256 FROM training_datasets WHERE id = ?", (dataset_id,)
    ).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT id FROM training_datasets ORDER BY id")]
        raise NotFound(
            f"no dataset {dataset_id!r} in training_datasets",
            hint=f"known: {', '.join(known)}" if known else "make one with `cra curate-data`",
        )
    path = Path(row["path"])
    return Dataset(
        row["id"], path if path.is_absolute() else root / path, json.loads(row["sha256"])
    )


def plan_path(conn: sqlite3.Connection, dataset_id: str | None) -> str | None:
    """The training plan the dataset `dataset_id` was curated from (None: no such dataset)."""
    row = conn.execute(
        "SELECT plan_path FROM training_datasets WHERE id = ?", (dataset_id,)
    ).fetchone()
    return None if row is None else row[0]


def dataset_exists(conn: sqlite3.Connection, dataset_id: str) -> bool:
    """Whether a dataset `dataset_id` is registered."""
    row = conn.execute("SELECT 1 FROM training_datasets WHERE id = ?", (dataset_id,)).fetchone()
    return row is not None


def registered_paths(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(id, recorded path) of every registered dataset, oldest first."""
    rows = conn.execute("SELECT id, path FROM training_datasets ORDER BY created_at, id")
    return [(row[0], row[1]) for row in rows]


@dataclass(frozen=True)
class DatasetUse:
    """A registered dataset holding rows of one repository's tasks: how many, per split."""

    id: str
    train: int
    eval: int


def datasets_with_repo(conn: sqlite3.Connection, root: Path, repo: str) -> list[DatasetUse]:
    """The registered datasets (oldest first) whose train or eval rows come from tasks of
    `repo` (by each row's `meta.repo`); a dataset whose files are gone counts for none."""
    uses = []
    for dataset_id, recorded in registered_paths(conn):
        path = Path(recorded)
        folder = path if path.is_absolute() else root / path
        counts = [_rows_of_repo(folder / f"{split}.jsonl", repo) for split in SPLITS]
        if any(counts):
            uses.append(DatasetUse(dataset_id, *counts))
    return uses


def _rows_of_repo(path: Path, repo: str) -> int:
    if not path.is_file():
        return 0
    needle = json.dumps(repo)
    count = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if needle not in line:  # most lines of other repositories parse no further
                continue
            try:
                meta = json.loads(line).get("meta")
            except (ValueError, AttributeError):
                continue
            if isinstance(meta, dict) and meta.get("repo") == repo:
                count += 1
    return count


@dataclass(frozen=True)
class NewDataset:
    """What a curation run registers: the dataset's id, plan, folder, counts and hashes
    (paths relative to the workspace root where they lie inside it)."""

    id: str
    plan_path: str
    path: str
    counts: dict[str, Any]
    sha256: dict[str, str]
    replay_of: list[str]
    created_at: str


def insert_dataset(conn: sqlite3.Connection, new: NewDataset) -> None:
    """The `training_datasets` row of `new` (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO training_datasets (id, plan_path, path, counts, sha256, "
        "replay_of, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            new.id,
            new.plan_path,
            new.path,
            json.dumps(new.counts),
            json.dumps(new.sha256),
            json.dumps(new.replay_of),
            new.created_at,
        ),
    )


def put_planless_dataset(
    conn: sqlite3.Connection,
    dataset_id: str,
    *,
    path: str,
    counts: dict[str, Any],
    sha256: dict[str, str],
    created_at: str,
) -> None:
    """The `training_datasets` row of a dataset written without a plan (no replay), or
    its path, counts and hashes updated when one of that id exists (its creation time
    kept): what a fixture dataset registers."""
    conn.execute(
        "INSERT INTO training_datasets (id, plan_path, path, counts, sha256, created_at) "
        "VALUES (?, NULL, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET path = excluded.path, "
        "counts = excluded.counts, sha256 = excluded.sha256",
        (dataset_id, path, json.dumps(counts), json.dumps(sha256), created_at),
    )


def read_rows(
    dataset: Dataset, split: str, *, adapter: str, method: str | None
) -> list[dict[str, Any]]:
    """The chat rows (sft, dpo) of `split` for `adapter` (and `method`, when given), after
    checking the file's recorded sha256; ranker rows are skipped (they are read by
    `cra.ranker_rows.read_ranker_rows`). A malformed line is an error naming file and
    line."""
    if method is not None and method not in METHODS:
        raise UsageError(f"unknown method {method!r}", hint=f"choose one of {', '.join(METHODS)}")
    path = checked_split(dataset, split)
    rows: list[dict[str, Any]] = []
    for number, row in json_lines(path):
        meta = row.get("meta") if isinstance(row, dict) else None
        if not isinstance(meta, dict):
            raise UsageError(f"{path}, line {number}: the row has no meta object")
        if meta.get("adapter") != adapter:
            continue
        if meta.get("technique") == RANKER_TECHNIQUE:
            continue  # a ranker row of this name: read by `read_ranker_rows`
        if method is not None and meta.get("technique") != method:
            continue
        _check_shape(row, meta.get("technique"), path, number)
        rows.append(row)
    return rows


def checked_split(dataset: Dataset, split: str) -> Path:
    """The file of `split`, after checking it exists and matches its recorded sha256."""
    path = dataset.split_path(split)
    if not path.is_file():
        raise NotFound(f"dataset {dataset.id}: {path} is missing")
    expected = dataset.sha256.get(path.name)
    if expected:
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumMismatch(path, expected=expected, actual=actual)
    return path


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of the JSONL file `path`, parsed, with its line number; a line
    that is not JSON is a UsageError naming it."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{path}, line {number}: not JSON: {exc}") from None


def _check_shape(row: dict[str, Any], technique: object, path: Path, number: int) -> None:
    keys = ("prompt", "completion") if technique == "sft" else ("prompt", "chosen", "rejected")
    if technique not in METHODS:
        raise UsageError(f"{path}, line {number}: meta.technique {technique!r} is not sft or dpo")
    for key in keys:
        value = row.get(key)
        if not isinstance(value, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in value
        ):
            raise UsageError(f"{path}, line {number}: {key!r} must be a list of chat messages")


def reference_text(row: dict[str, Any]) -> str:
    """The answer a row teaches: the SFT completion or the DPO chosen reply."""
    messages = row.get("completion") or row.get("chosen") or []
    return "".join(str(m.get("content", "")) for m in messages)
