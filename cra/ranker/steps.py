"""Recording every step of a ranker run in `raw.db` (the `train_steps` table), as LoRA
runs record theirs: keyed to the run while it trains, stamped with the version it
registers once registered."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from cra.adapters.names import RANKER_METHOD
from cra.db.connection import transaction
from cra.db.train_steps import TrainStep, record_step, set_run_version
from cra.ranker.fit import StepHook


def step_recorder(conn: sqlite3.Connection, run_id: str, adapter: str) -> StepHook:
    """A `fit` step hook writing each step (step, epoch, loss, learning rate) of run
    `run_id` of ranker `adapter` through `conn` as it is taken."""

    def record(step: int, epoch: float, loss: float, learning_rate: float) -> None:
        row = TrainStep(
            run_id=run_id,
            adapter=adapter,
            method=RANKER_METHOD,
            step=step,
            epoch=epoch,
            loss=loss,
            learning_rate=learning_rate,
            logs={"loss": loss, "epoch": epoch, "learning_rate": learning_rate},
        )
        record_step(conn, row, datetime.now(UTC).isoformat())

    return record


def stamp_run(conn: sqlite3.Connection, run_id: str, version: int) -> int:
    """Key the recorded steps of `run_id` to the ranker `version` it registered; return
    how many."""
    with transaction(conn):
        return set_run_version(conn, run_id, version)
