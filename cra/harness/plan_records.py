"""Recording what one task of `cra harness run` produced: gold, retrieval, plans and
their scores, in one transaction."""

from __future__ import annotations

import json
import sqlite3

from cra.db import transaction
from cra.db.plans import PlanRow, ScoreRow, record_plan
from cra.db.retrievals import record_retrieval
from cra.db.tasks import set_gold
from cra.fsutil import now_iso
from cra.harness.planning import TaskResult
from cra.harness.score import PlanScore


def record_result(conn: sqlite3.Connection, run_id: int, result: TaskResult, top_k: int) -> None:
    """Write everything one task produced (gold, retrieval, plans and their scores) in one
    transaction."""
    now = now_iso()
    gold_symbols = [
        {"path": g.path, "qualname": g.qualname, "change": g.change} for g in result.gold_symbols
    ]
    hits = json.dumps([h.as_dict() for h in result.hits])
    served = result.retrieval
    files = served.files_json()
    with transaction(conn):
        set_gold(conn, result.task_id, json.dumps(result.gold_files), json.dumps(gold_symbols))
        record_retrieval(
            conn,
            result.task_id,
            run_id,
            method=served.method,
            query=result.commit.task_text,
            k=top_k,
            results=hits,
            now=now,
            adapter=served.adapter,
            adapter_version=served.version,
            files=json.dumps(files) if files is not None else None,
        )
        for attempt, score in result.attempts:
            plan = PlanRow(
                result.task_id,
                run_id,
                attempt.planner,
                attempt.temperature,
                attempt.llm_call_id,
                int(attempt.plan is not None),
                attempt.plan.to_json() if attempt.plan else None,
                attempt.raw,
                attempt.error,
            )
            record_plan(conn, plan, _score_row(score, result.index_errors), now)


def _score_row(score: PlanScore | None, index_errors: dict[str, str]) -> ScoreRow:
    """A plan's score as recorded; an invalid plan scores 0 on each."""
    if score is None:
        return ScoreRow(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 0.0, "{}", '{"invalid": true}')
    details = {
        **score.details,
        "symbols_defined": score.symbols_defined,
        "index_errors": index_errors,
    }
    return ScoreRow(
        score.file_precision,
        score.file_recall,
        score.file_f1,
        score.symbol_precision,
        score.symbol_recall,
        score.symbol_f1,
        score.order_score,
        score.alignment,
        json.dumps(score.weights.as_dict()),
        json.dumps(details),
    )
