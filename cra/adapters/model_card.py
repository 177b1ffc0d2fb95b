"""The model card (`README.md`) of an adapter version, in the shape PEFT's own cards have:
YAML front matter (`base_model`, `library_name: peft`, `datasets`, `tags`) and a body with
the training data, hyperparameters, metrics, lineage and file checksums.

The card is documentation, rewritten when the version is evaluated; it is not one of the
files whose sha256 makes the version's identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cra.fsutil import atomic_write_text

CARD_NAME = "README.md"
META_NAME = "meta.json"
"""Beside the adapter files: what registration recorded (lineage included)."""


@dataclass(frozen=True)
class CardFacts:
    """What the card says about one adapter version."""

    name: str
    version: int
    base_model: str
    base_model_hash: str
    dataset_id: str | None
    method: str
    hyperparams: dict[str, Any]
    train_metrics: dict[str, Any]
    files_sha256: dict[str, str]
    created_at: str
    lineage: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, Any] = field(default_factory=dict)


def _front_matter(facts: CardFacts) -> list[str]:
    lines = ["---", f"base_model: {json.dumps(Path(facts.base_model).name)}", "library_name: peft"]
    if facts.dataset_id:
        lines += ["datasets:", f"- {json.dumps(facts.dataset_id)}"]
    lines += ["tags:", "- cra", "- lora", f"- {json.dumps(facts.method)}", "---"]
    return lines


def _table(rows: dict[str, Any]) -> list[str]:
    if not rows:
        return ["(none recorded)"]
    out = ["| key | value |", "| --- | --- |"]
    out += [f"| {k} | {json.dumps(v, sort_keys=True)} |" for k, v in sorted(rows.items())]
    return out


def _evals(evals: dict[str, Any]) -> list[str]:
    if not evals:
        return ["Not evaluated yet: run `cra adapter eval NAME@vN`."]
    out = []
    for holdout, result in sorted(evals.items()):
        out += ["", f"Holdout `{holdout}`:", "", *_table(dict(result.get("metrics", {})))]
        base = result.get("base_metrics")
        if base:
            out += ["", "The base model on the same holdout:", "", *_table(dict(base))]
    return out


def render_card(facts: CardFacts) -> str:
    """The card's text."""
    ref = f"{facts.name}@v{facts.version}"
    body = [
        *_front_matter(facts),
        "",
        f"# {ref}",
        "",
        f"A LoRA adapter for the `{facts.name}` stage, trained by cra with {facts.method} "
        f"on dataset `{facts.dataset_id or 'none'}` on {facts.created_at}.",
        "",
        f"- base model: `{facts.base_model}` (sha256 of config and weights "
        f"`{facts.base_model_hash}`)",
        f"- served as `{ref}`; load with `PeftModel.from_pretrained(base, PATH)`",
        "",
        "## Hyperparameters",
        "",
        *_table(facts.hyperparams),
        "",
        "## Training metrics",
        "",
        *_table(facts.train_metrics),
        "",
        "## Evaluation",
        "",
        *_evals(facts.eval_metrics),
        "",
        "## Lineage",
        "",
        *_table(facts.lineage),
        "",
        "## Files",
        "",
        "| file | sha256 |",
        "| --- | --- |",
        *(f"| {rel} | `{digest}` |" for rel, digest in sorted(facts.files_sha256.items())),
    ]
    return "\n".join(body) + "\n"


def write_card(folder: Path, facts: CardFacts) -> Path:
    """Write the card into the version's `folder` atomically; return its path."""
    path = folder / CARD_NAME
    atomic_write_text(path, render_card(facts))
    return path


def write_card_once_known(folder: Path, facts: CardFacts) -> None:
    """Write the card with the lineage `meta.json` in `folder` records; a version
    registered before cards existed, whose checksums cover a `README.md`, keeps its own."""
    if CARD_NAME in facts.files_sha256 or not folder.is_dir():
        return
    try:
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    lineage = meta.get("lineage") if isinstance(meta, dict) else None
    write_card(folder, replace(facts, lineage=lineage if isinstance(lineage, dict) else {}))
