"""The row a file-relevance ranker trains on, as curation writes it and training reads it.

One row is one task: its text (the query), the files its commit changed (positives) and
files it did not change that a lexical retriever ranked high (hard negatives), with the
snapshot the files are read from (`parent_sha`: the commit before the change, never a
later one) and when the change was authored (rows are split by time, never at random).

In a dataset's `train.jsonl` / `eval.jsonl` a ranker row is one JSON line
`{"meta": {"adapter": ..., "technique": "ranker", "task_id": ..., "repo": ...,
"kind": ...}, "ranker": {"query": ..., "positives": [...], "negatives": [...],
"parent_sha": ..., "authored_at": ...}}`; `row_line` writes it and `parse_row` reads it
back, checking every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.datasets_store import RANKER_TECHNIQUE, Dataset, checked_split, json_lines
from cra.errors import UsageError

TECHNIQUE = RANKER_TECHNIQUE
RANKER_ADAPTER = "scope-ranker"
ROW_KINDS = ("tested", "untested")


@dataclass(frozen=True)
class RankerRow:
    """One task as a ranker example. `kind` says whether the task's tests were checked
    (`tested`: a validated task) or the row comes from a mined commit alone."""

    task_id: str
    repo: str
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    parent_sha: str
    authored_at: str
    kind: str = "untested"

    def __post_init__(self) -> None:
        if not self.task_id or not self.repo:
            raise UsageError("a ranker row needs a task_id and a repo")
        if not self.query.strip():
            raise UsageError(f"ranker row {self.task_id}: the query is empty")
        if not self.positives:
            raise UsageError(f"ranker row {self.task_id}: no positive (gold) files")
        overlap = set(self.positives) & set(self.negatives)
        if overlap:
            raise UsageError(
                f"ranker row {self.task_id}: {sorted(overlap)[0]} is both positive and negative"
            )
        if not self.parent_sha:
            raise UsageError(f"ranker row {self.task_id}: no parent_sha")
        if self.kind not in ROW_KINDS:
            raise UsageError(
                f"ranker row {self.task_id}: kind {self.kind!r} is not one of {ROW_KINDS}"
            )


def row_line(row: RankerRow, *, adapter: str = RANKER_ADAPTER) -> dict[str, Any]:
    """The JSONL object of `row` in a dataset split."""
    return {
        "meta": {
            "adapter": adapter,
            "technique": TECHNIQUE,
            "task_id": row.task_id,
            "repo": row.repo,
            "kind": row.kind,
        },
        "ranker": {
            "query": row.query,
            "positives": list(row.positives),
            "negatives": list(row.negatives),
            "parent_sha": row.parent_sha,
            "authored_at": row.authored_at,
        },
    }


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{what} must be a list of file paths")
    return tuple(value)


def parse_row(obj: object) -> RankerRow:
    """A RankerRow from its JSONL object; UsageError naming the field that is wrong."""
    if not isinstance(obj, dict):
        raise UsageError("a ranker row must be a JSON object")
    meta, body = obj.get("meta"), obj.get("ranker")
    if not isinstance(meta, dict) or not isinstance(body, dict):
        raise UsageError("a ranker row needs a meta object and a ranker object")
    if meta.get("technique") != TECHNIQUE:
        raise UsageError(f"meta.technique is {meta.get('technique')!r}, not {TECHNIQUE!r}")
    return RankerRow(
        task_id=str(meta.get("task_id") or ""),
        repo=str(meta.get("repo") or ""),
        query=str(body.get("query") or ""),
        positives=_strings(body.get("positives"), "ranker.positives"),
        negatives=_strings(body.get("negatives", []), "ranker.negatives"),
        parent_sha=str(body.get("parent_sha") or ""),
        authored_at=str(body.get("authored_at") or ""),
        kind=str(meta.get("kind") or "untested"),
    )


def read_ranker_rows(
    dataset: Dataset, split: str, *, adapter: str = RANKER_ADAPTER
) -> list[RankerRow]:
    """The ranker rows of `split` for `adapter`, after checking the file's recorded
    sha256; other rows are skipped. A malformed ranker line is an error naming the line."""
    return _parse_lines(checked_split(dataset, split), adapter)


def _parse_lines(path: Path, adapter: str) -> list[RankerRow]:
    rows: list[RankerRow] = []
    for number, obj in json_lines(path):
        meta = obj.get("meta") if isinstance(obj, dict) else None
        if not isinstance(meta, dict) or meta.get("adapter") != adapter:
            continue
        if meta.get("technique") != TECHNIQUE:
            continue
        try:
            rows.append(parse_row(obj))
        except UsageError as exc:
            raise UsageError(f"{path}, line {number}: {exc}") from None
    return rows
