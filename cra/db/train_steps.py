"""The `train_steps` table: every logging step of every training run.

`cra train` writes a row per logging step while the run trains (keyed by the run's id),
and stamps the run's rows with the adapter version once that version is registered.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from cra.db.connection import transaction


@dataclass(frozen=True)
class TrainStep:
    """One logging step of a training run; None where the trainer did not log it."""

    run_id: str
    adapter: str
    method: str
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    num_tokens: float | None = None
    tokens_per_s: float | None = None
    reward_margin: float | None = None
    version: int | None = None
    logs: dict[str, float] = field(default_factory=dict)
    created_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "run_id": self.run_id,
            "adapter": self.adapter,
            "version": self.version,
            "method": self.method,
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.loss,
            "learning_rate": self.learning_rate,
            "grad_norm": self.grad_norm,
            "num_tokens": self.num_tokens,
            "tokens_per_s": self.tokens_per_s,
            "reward_margin": self.reward_margin,
        }


_COLUMNS = (
    "run_id, adapter, version, method, step, epoch, loss, learning_rate, grad_norm, "
    "num_tokens, tokens_per_s, reward_margin, logs, created_at"
)


def record_step(conn: sqlite3.Connection, row: TrainStep, now: str) -> None:
    """Record one logging step (a step logged twice keeps its first row)."""
    with transaction(conn):
        conn.execute(
            f"INSERT OR IGNORE INTO train_steps ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.run_id,
                row.adapter,
                row.version,
                row.method,
                row.step,
                row.epoch,
                row.loss,
                row.learning_rate,
                row.grad_norm,
                row.num_tokens,
                row.tokens_per_s,
                row.reward_margin,
                json.dumps(row.logs, sort_keys=True),
                now,
            ),
        )


def set_run_version(conn: sqlite3.Connection, run_id: str, version: int) -> int:
    """Key the steps of `run_id` to the adapter version it registered; return how many.

    Runs inside the caller's transaction when there is one (the registration's)."""
    cursor = conn.execute("UPDATE train_steps SET version = ? WHERE run_id = ?", (version, run_id))
    return int(cursor.rowcount)


def _step(row: sqlite3.Row) -> TrainStep:
    return TrainStep(
        run_id=row["run_id"],
        adapter=row["adapter"],
        method=row["method"],
        step=int(row["step"]),
        epoch=row["epoch"],
        loss=row["loss"],
        learning_rate=row["learning_rate"],
        grad_norm=row["grad_norm"],
        num_tokens=row["num_tokens"],
        tokens_per_s=row["tokens_per_s"],
        reward_margin=row["reward_margin"],
        version=row["version"],
        logs=json.loads(row["logs"] or "{}"),
        created_at=row["created_at"],
    )


def train_steps(
    conn: sqlite3.Connection, adapter: str | None = None, version: int | None = None
) -> list[TrainStep]:
    """The recorded steps (of `adapter`, of its `version`), by adapter, version, run, step."""
    where: list[str] = []
    args: list[object] = []
    if adapter is not None:
        where.append("adapter = ?")
        args.append(adapter)
    if version is not None:
        where.append("version = ?")
        args.append(version)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM train_steps {clause} "
        "ORDER BY adapter, version IS NULL, version, run_id, step",
        args,
    ).fetchall()
    return [_step(r) for r in rows]


def step_count(conn: sqlite3.Connection) -> int:
    """How many steps are recorded in all."""
    return int(conn.execute("SELECT count(*) FROM train_steps").fetchone()[0])


def latest_step(conn: sqlite3.Connection) -> TrainStep | None:
    """The step recorded last (of whichever run logged last); None when there is none."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM train_steps ORDER BY rowid DESC LIMIT 1").fetchone()
    return None if row is None else _step(row)
