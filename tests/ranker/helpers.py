"""Helpers of the ranker tests: a workspace whose [ranker] base is the tiny encoder, its
copies, and reading and planting retrievals."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

from cra.db import transaction
from cra.db.retrievals import record_retrieval
from cra.fixtures.ranker import TOPICS
from cra.fsutil import now_iso
from cra.workspace import Workspace, init_workspace, open_workspace


def ranker_workspace(root: Path, base: Path, extra: str = "") -> Workspace:
    """A fresh workspace training the ranker from `base` with small, fast settings."""
    init_workspace(root)
    (root / "cra.toml").write_text(
        f'[ranker]\nbase = "{base}"\nepochs = 8\nbatch_size = 8\nlearning_rate = 0.001\n{extra}'
    )
    return open_workspace(root)


def copy_workspace(template: Path, workspace: Workspace, ranker: str) -> Workspace:
    """`template`'s data (databases, repositories, versions, cra.toml) copied into the
    fresh `workspace`, with `[retrieve] ranker` set to `ranker`; the workspace reopened."""
    shutil.copytree(template, workspace.root, dirs_exist_ok=True)
    toml = workspace.root / "cra.toml"
    toml.write_text(toml.read_text() + f'\n[retrieve]\nranker = "{ranker}"\n')
    return open_workspace(workspace.root)


def retrieval_rows(workspace: Workspace) -> list[tuple]:
    """(task_id, method, adapter, adapter_version, files) of every retrieval, in order."""
    with closing(workspace.raw_db()) as conn:
        return conn.execute(
            "SELECT task_id, method, adapter, adapter_version, files FROM retrievals ORDER BY id"
        ).fetchall()


def plant_missing_gold(workspace: Workspace, name: str, version: int, copies: int) -> int:
    """Record `copies` retrievals served by `name@vN` for each planned task whose files put
    every gold file last (a live regression); return how many were written."""
    written = 0
    with closing(workspace.raw_db()) as conn, transaction(conn):
        tasks = conn.execute("SELECT task_id, gold_files FROM tasks WHERE gold_files != '[]'")
        for task_id, gold_json in tasks.fetchall():
            gold = {g["path"] for g in json.loads(gold_json)}
            files = [f"pkg/{m}.py" for m in TOPICS.values() if f"pkg/{m}.py" not in gold]
            ranked = [{"path": p, "score": 1.0, "encoder": 1.0, "bm25": 0.0} for p in files]
            ranked += [{"path": p, "score": 0.0, "encoder": 0.0, "bm25": 0.0} for p in gold]
            for _ in range(copies):
                record_retrieval(
                    conn,
                    task_id,
                    None,
                    method="learned",
                    query="planted",
                    k=20,
                    results="[]",
                    now=now_iso(),
                    adapter=name,
                    adapter_version=version,
                    files=json.dumps(ranked),
                )
                written += 1
    return written
