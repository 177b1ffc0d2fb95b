"""Live metrics of an adapter version: what harness runs that used it scored.

The calls are read through the `llm_calls` store; a call used a version when `llm_calls`
records its adapter and version (or its served name `NAME@vN` as the model).
"""

from __future__ import annotations

import json
import sqlite3

from cra.adapters.metrics import Reference, score_output
from cra.db import llm_calls


def live_scores(
    conn: sqlite3.Connection, name: str, version: int, *, since: str = ""
) -> list[dict[str, float]]:
    """One metrics dict per scored live call of `name@vN` made at or after `since`: plan
    scores for planning, the kind's scorer against the task's gold for the others."""
    if name == "planning":
        return [
            {
                "alignment": r.alignment,
                "file_recall": r.file_recall,
                "file_precision": r.file_precision,
                "symbol_recall": r.symbol_recall,
                "symbol_precision": r.symbol_precision,
            }
            for r in llm_calls.plan_scores_of(conn, name, version, since)
        ]
    out = []
    for call in llm_calls.calls_with_gold(conn, name, version, since):
        files = tuple(f["path"] for f in json.loads(call.gold_files or "[]") if isinstance(f, dict))
        symbols = tuple(
            f"{s['path']}::{s['qualname']}"
            for s in json.loads(call.gold_symbols or "[]")
            if isinstance(s, dict)
        )
        if name in ("scope", "precision") and not (files or symbols):
            continue
        out.append(score_output(name, call.response or "", Reference("", files, symbols)))
    return out


def runs_using(conn: sqlite3.Connection, name: str, version: int) -> list[int]:
    """Ids of the harness runs that called `name@vN`."""
    return llm_calls.runs_using(conn, name, version)
