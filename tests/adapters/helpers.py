"""Helpers of the registry tests: real random-weight adapters registered as candidates,
and eval results planted on them."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from cra.adapters.registry import Registration, register, store_eval
from cra.fixtures.adapters import make_adapter
from cra.fsutil import now_iso
from cra.workspace import Workspace

HOLDOUT = "toy-1:0123456789abcdef"


def candidate(ws: Workspace, tmp: Path, seed: int, name: str = "scope") -> int:
    """Register a real random-weight adapter as a candidate; return its version."""
    staged = make_adapter(
        Path(ws.config.settings.model.base), tmp / f"stage-{name}-{seed}", seed=seed
    )
    version = register(
        ws,
        Registration(
            name=name,
            staged=staged,
            base_model=Path(ws.config.settings.model.base),
            dataset_id="toy-1",
            method="sft",
        ),
    )
    return version.version


def planted_eval(ws: Workspace, version: int, recall: list[float], name: str = "scope") -> None:
    """Store an eval result with these per-example file recalls (precision the same)."""
    mean = sum(recall) / len(recall)
    store_eval(
        ws,
        name,
        version,
        HOLDOUT,
        {
            "dataset_id": "toy-1",
            "holdout": HOLDOUT,
            "n": len(recall),
            "backend": "planted",
            "primary": ["file_recall", "file_precision"],
            "metrics": {"file_recall": mean, "file_precision": mean},
            "base_metrics": {"file_recall": 0.0, "file_precision": 0.0},
            "per_example": {"file_recall": recall, "file_precision": recall},
            "base_per_example": {
                "file_recall": [0.0] * len(recall),
                "file_precision": [0.0] * len(recall),
            },
            "evaluated_at": now_iso(),
        },
    )


def status(ws: Workspace, name: str = "scope") -> dict[int, str]:
    with closing(ws.raw_db()) as conn:
        return {
            int(r[0]): r[1]
            for r in conn.execute(
                "SELECT version, status FROM adapter_versions WHERE name = ?", (name,)
            )
        }
