"""Live metrics of an adapter version: what harness runs that used it scored.

Every query over the logs that the registry needs is here, in one place, so that it can
move behind the log-analysis API unchanged. A call used a version when `llm_calls`
records its adapter and version (or its served name `NAME@vN` as the model).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cra.adapters.metrics import Reference, score_output

_USED = "((c.adapter = :name AND c.adapter_version = :version) OR c.model = :served)"

PLAN_SCORES = f"""
SELECT s.alignment, s.file_recall, s.file_precision, s.symbol_recall, s.symbol_precision
FROM llm_calls c JOIN plans p ON p.llm_call_id = c.id JOIN plan_scores s ON s.plan_id = p.id
WHERE {_USED} AND c.created_at >= :since ORDER BY c.id
"""

SCORED_CALLS = f"""
SELECT c.response, t.gold_files, t.gold_symbols
FROM llm_calls c JOIN tasks t ON t.task_id = c.task_id
WHERE {_USED} AND c.created_at >= :since AND c.error IS NULL ORDER BY c.id
"""

RUNS_USING = f"""
SELECT DISTINCT c.run_id FROM llm_calls c WHERE {_USED} AND c.run_id IS NOT NULL ORDER BY 1
"""


def _args(name: str, version: int, since: str) -> dict[str, Any]:
    return {"name": name, "version": version, "served": f"{name}@v{version}", "since": since}


def live_scores(
    conn: sqlite3.Connection, name: str, version: int, *, since: str = ""
) -> list[dict[str, float]]:
    """One metrics dict per scored live call of `name@vN` made at or after `since`: plan
    scores for planning, the kind's scorer against the task's gold for the others."""
    args = _args(name, version, since)
    if name == "planning":
        rows = conn.execute(PLAN_SCORES, args).fetchall()
        return [
            {
                "alignment": r[0],
                "file_recall": r[1],
                "file_precision": r[2],
                "symbol_recall": r[3],
                "symbol_precision": r[4],
            }
            for r in rows
        ]
    out = []
    for response, gold_files, gold_symbols in conn.execute(SCORED_CALLS, args).fetchall():
        files = tuple(f["path"] for f in json.loads(gold_files or "[]") if isinstance(f, dict))
        symbols = tuple(
            f"{s['path']}::{s['qualname']}"
            for s in json.loads(gold_symbols or "[]")
            if isinstance(s, dict)
        )
        if name in ("scope", "precision") and not (files or symbols):
            continue
        out.append(score_output(name, response or "", Reference("", files, symbols)))
    return out


def runs_using(conn: sqlite3.Connection, name: str, version: int) -> list[int]:
    """Ids of the harness runs that called `name@vN`."""
    return [int(r[0]) for r in conn.execute(RUNS_USING, _args(name, version, ""))]
