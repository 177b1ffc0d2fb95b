"""The dataset card (`card.json`), its README and the counts a dataset is registered with."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cra.curation.rows import Row

CARD_FORMAT_VERSION = 1


def _date_range(rows: tuple[Row, ...]) -> list[str] | None:
    if not rows:
        return None
    ts = [r.authored_ts for r in rows]
    return [
        datetime.fromtimestamp(min(ts), UTC).isoformat(),
        datetime.fromtimestamp(max(ts), UTC).isoformat(),
    ]


def tally(rows: tuple[Row, ...]) -> dict[str, Any]:
    """What a split holds: rows per group, source, repository and domain, dates, tasks."""
    return {
        "rows": len(rows),
        "by_group": dict(Counter("/".join(r.group) for r in rows)),
        "by_source": dict(Counter(r.source for r in rows)),
        "by_repo": dict(Counter(r.record["meta"]["repo"] for r in rows)),
        "by_domain": dict(Counter(r.domain for r in rows)),
        "date_range": _date_range(rows),
        "tasks": len({r.task_id for r in rows}),
    }


def registered_counts(train: tuple[Row, ...], held: tuple[Row, ...]) -> dict[str, Any]:
    """The counts `training_datasets` records: rows per split, replayed, and per group."""
    return {
        "train": len(train),
        "eval": len(held),
        "replay": sum(1 for r in train if r.source == "replay"),
        "by_group": {
            "/".join(g): {
                "train": sum(1 for r in train if r.group == g),
                "eval": sum(1 for r in held if r.group == g),
            }
            for g in sorted({r.group for r in train + held})
        },
    }


@dataclass(frozen=True)
class ReplaySummary:
    """What replay added to the train split."""

    share_target: float
    rows: int
    train_rows: int
    sources: list[str]
    dropped: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The card's `replay` entry."""
        actual = round(self.rows / self.train_rows, 4) if self.train_rows else 0.0
        return {
            "share_target": self.share_target,
            "share_actual": actual,
            "rows": self.rows,
            "from": self.sources,
            "dropped": self.dropped,
        }


LICENSE = "other"
"""The card's `license`: repo packages record no license of their repositories, so the
rows (derived from their commits) carry the Hub's `other`, named unknown below."""
LICENSE_NAME = "unknown-repository-licenses"


def front_matter(card: dict[str, Any]) -> str:
    """The Hugging Face dataset card metadata (YAML between `---` lines): license, task
    categories, the `train`/`eval` data files as the default config, and each split's
    row count (`dataset_info.splits`). Strings are written as JSON, valid YAML."""
    q = json.dumps
    splits = (("train", "train.jsonl"), ("eval", "eval.jsonl"))
    lines = [
        "---",
        f"pretty_name: {q('cra dataset ' + str(card['id']))}",
        f"license: {LICENSE}",
        f"license_name: {LICENSE_NAME}",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- code",
        "- cra",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *(f"  - split: {name}\n    path: {file}" for name, file in splits),
        "dataset_info:",
        "  config_name: default",
        "  splits:",
        *(
            f"  - name: {name}\n    num_examples: {card['counts'][name]['rows']}"
            for name, _ in splits
        ),
        "---",
    ]
    return "\n".join(lines)


def readme(card: dict[str, Any], card_sha256: str | None = None) -> str:
    """The dataset's `README.md`, from its card: Hub metadata, then what it holds and the
    sha256 of each data file (and of `card.json` when given)."""
    train, held = card["counts"]["train"], card["counts"]["eval"]
    replay = card["replay"]
    hashes = dict(card.get("sha256", {}))
    if card_sha256 is not None:
        hashes["card.json"] = card_sha256
    lines = [
        front_matter(card),
        "",
        f"# Dataset {card['id']}",
        "",
        f"Written {card['created_at']} from plan `{card['plan']['path']}`.",
        f"Train: {train['rows']} rows ({train['tasks']} tasks, {train['date_range']}); "
        f"eval: {held['rows']} rows ({held['tasks']} tasks, {held['date_range']}), all authored "
        f"on or after {card['holdout']['boundary']}.",
        f"Replay: {replay['rows']} rows ({replay['share_actual']:.0%}) from "
        f"{', '.join(replay['from']) or 'no earlier dataset'}.",
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
        "repository, commit, authored date, source, domain and scores.",
        "",
        f"License: `{LICENSE}` ({LICENSE_NAME}): the rows derive from the commits of the "
        "repositories named in `card.json`, whose own licenses apply; repo packages do not "
        "record them.",
        "",
        "| file | sha256 |",
        "| --- | --- |",
        *(f"| {name} | `{digest}` |" for name, digest in hashes.items()),
    ]
    return "\n".join(lines) + "\n"
