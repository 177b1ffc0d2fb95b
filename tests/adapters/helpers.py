"""Helpers of the registry tests: real random-weight adapters registered as candidates,
eval results planted on them and live calls planted for them."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

from cra.adapters.registry import Registration, register, store_eval
from cra.db import transaction
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


def plant_live_calls(ws: Workspace, version: int, answers: list[str]) -> None:
    """Harness-run calls of scope@vN on tasks whose gold file is src/tally/stats.py."""
    with closing(ws.raw_db()) as conn, transaction(conn):
        repo = conn.execute(
            "INSERT OR IGNORE INTO repos (name, added_at) VALUES ('tally', ?)", (now_iso(),)
        )
        repo_id = conn.execute("SELECT id FROM repos WHERE name = 'tally'").fetchone()[0]
        run = conn.execute(
            "INSERT INTO harness_runs (repo_id, kind, started_at) VALUES (?, 'plan', ?)",
            (repo_id, now_iso()),
        ).lastrowid
        start = conn.execute("SELECT count(*) FROM commits").fetchone()[0]
        for i, answer in enumerate(answers, start=start):
            commit = conn.execute(
                "INSERT INTO commits (repo_id, sha, authored_at, authored_ts, subject, verdict, "
                "stage, mined_at) VALUES (?, ?, ?, 0, 'Fix it', 'qualified', 'tests', ?)",
                (repo_id, f"{i:040x}", now_iso(), now_iso()),
            ).lastrowid
            task = f"tally@{i:012x}"
            conn.execute(
                "INSERT INTO tasks (task_id, repo_id, commit_id, task_text, gold_files, "
                "created_at) VALUES (?, ?, ?, 'Fix it', ?, ?)",
                (
                    task,
                    repo_id,
                    commit,
                    json.dumps([{"path": "src/tally/stats.py", "old_path": None}]),
                    now_iso(),
                ),
            )
            conn.execute(
                "INSERT INTO llm_calls (task_id, run_id, stage, model, adapter, adapter_version, "
                "messages, response, created_at) VALUES (?, ?, 'scope', ?, 'scope', ?, '[]', ?, ?)",
                (task, run, f"scope@v{version}", version, answer, now_iso()),
            )
    del repo
