"""`llm_calls`: every call the LLM client made, and the reads of the calls an adapter
version served (the registry's live metrics).

A call used a version when `llm_calls` records its adapter and version (or its served
name `NAME@vN` as the model). Analysis reads across the raw tables stay in
:mod:`cra.db.logs` and its parts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cra.db.connection import transaction

_USED = "((c.adapter = :name AND c.adapter_version = :version) OR c.model = :served)"

_PLAN_SCORES = f"""
SELECT s.alignment, s.file_recall, s.file_precision, s.symbol_recall, s.symbol_precision
FROM llm_calls c JOIN plans p ON p.llm_call_id = c.id JOIN plan_scores s ON s.plan_id = p.id
WHERE {_USED} AND c.created_at >= :since ORDER BY c.id
"""

_SCORED_CALLS = f"""
SELECT c.response, t.gold_files, t.gold_symbols
FROM llm_calls c JOIN tasks t ON t.task_id = c.task_id
WHERE {_USED} AND c.created_at >= :since AND c.error IS NULL ORDER BY c.id
"""

_RUNS_USING = f"""
SELECT DISTINCT c.run_id FROM llm_calls c WHERE {_USED} AND c.run_id IS NOT NULL ORDER BY 1
"""


@dataclass(frozen=True)
class CallPlanScore:
    """The score of a plan that a call of an adapter version made."""

    alignment: float
    file_recall: float
    file_precision: float
    symbol_recall: float
    symbol_precision: float


@dataclass(frozen=True)
class CallWithGold:
    """A successful call's response with its task's gold (JSON texts, None when unset)."""

    response: str | None
    gold_files: str | None
    gold_symbols: str | None


def record_call(conn: sqlite3.Connection, row: Mapping[str, object]) -> int | None:
    """Write one call, its columns as `row` names them, in its own transaction; its id."""
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    with transaction(conn):
        cursor = conn.execute(
            f"INSERT INTO llm_calls ({columns}) VALUES ({marks})", tuple(row.values())
        )
    return cursor.lastrowid


def _args(name: str, version: int, since: str) -> dict[str, Any]:
    return {"name": name, "version": version, "served": f"{name}@v{version}", "since": since}


def plan_scores_of(
    conn: sqlite3.Connection, name: str, version: int, since: str
) -> list[CallPlanScore]:
    """The scores of the plans made by calls of `name@vN` at or after `since`, in call order."""
    rows = conn.execute(_PLAN_SCORES, _args(name, version, since)).fetchall()
    return [CallPlanScore(*row) for row in rows]


def calls_with_gold(
    conn: sqlite3.Connection, name: str, version: int, since: str
) -> list[CallWithGold]:
    """The successful calls of `name@vN` at or after `since` on a recorded task, with the
    task's gold, in call order."""
    rows = conn.execute(_SCORED_CALLS, _args(name, version, since)).fetchall()
    return [CallWithGold(*row) for row in rows]


def runs_using(conn: sqlite3.Connection, name: str, version: int) -> list[int]:
    """Ids of the harness runs that called `name@vN`."""
    return [int(r[0]) for r in conn.execute(_RUNS_USING, _args(name, version, ""))]


def tokens_since(conn: sqlite3.Connection, since: str) -> int:
    """LLM tokens (prompt + completion) of the calls made at or after `since` (ISO time)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0) "
        "FROM llm_calls WHERE created_at >= ?",
        (since,),
    ).fetchone()
    return int(row[0])
