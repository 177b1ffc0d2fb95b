"""Recording every logging step of a training run in `raw.db` (the `train_steps` table).

A transformers `TrainerCallback` whose `on_log` turns each step's logs into a
:class:`cra.db.train_steps.TrainStep`; the summary logged at the end of training (no
`loss`) is not a step and is left out.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cra.db.train_steps import TrainStep, record_step

REWARD_MARGIN = "rewards/margins"
"""The key trl's DPO trainer logs the mean chosen-minus-rejected reward under."""


@dataclass(frozen=True)
class RunKey:
    """Which run the steps belong to."""

    run_id: str
    adapter: str
    method: str


def _number(logs: dict[str, Any], key: str) -> float | None:
    value = logs.get(key)
    return float(value) if isinstance(value, int | float) else None


def step_of(key: RunKey, step: int, logs: dict[str, Any], tokens_per_s: float | None) -> TrainStep:
    """The row of one logging step."""
    numeric = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
    return TrainStep(
        run_id=key.run_id,
        adapter=key.adapter,
        method=key.method,
        step=step,
        epoch=_number(logs, "epoch"),
        loss=_number(logs, "loss"),
        learning_rate=_number(logs, "learning_rate"),
        grad_norm=_number(logs, "grad_norm"),
        num_tokens=_number(logs, "num_tokens"),
        tokens_per_s=tokens_per_s,
        reward_margin=_number(logs, REWARD_MARGIN),
        logs=numeric,
    )


def step_recorder(conn: sqlite3.Connection, key: RunKey) -> Any:
    """A TrainerCallback that records each logging step of the run `key` through `conn`."""
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        """Write every logging step to `train_steps` as it is logged."""

        def __init__(self) -> None:
            self.last = (time.perf_counter(), 0.0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.last = (time.perf_counter(), 0.0)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            entry = dict(logs or {})
            if "loss" not in entry:
                return
            now = time.perf_counter()
            tokens = _number(entry, "num_tokens")
            rate = None
            if tokens is not None and now > self.last[0]:
                rate = round((tokens - self.last[1]) / (now - self.last[0]), 1)
                self.last = (now, tokens)
            row = step_of(key, int(state.global_step), entry, rate)
            record_step(conn, row, datetime.now(UTC).isoformat())

    return StepRecorder()
