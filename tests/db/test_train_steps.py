"""The train_steps store: steps recorded once per run and step, keyed to a version later."""

from __future__ import annotations

from pathlib import Path

from cra.db import open_raw, transaction
from cra.db.train_steps import TrainStep, record_step, set_run_version, step_count, train_steps


def test_steps_are_recorded_once_and_keyed_to_the_version_the_run_registered(
    tmp_path: Path,
) -> None:
    """A step logged twice keeps one row; set_run_version stamps only that run's steps."""
    conn = open_raw(tmp_path / "raw.db")
    for run, step, loss in (("a-1", 1, 2.0), ("a-1", 2, 1.5), ("a-1", 2, 9.9), ("a-2", 1, 3.0)):
        record_step(conn, TrainStep(run, "scope", "sft", step, loss=loss), "2026-01-01T00:00:00")
    with transaction(conn):
        assert set_run_version(conn, "a-1", 3) == 2
    assert step_count(conn) == 3
    kept = train_steps(conn, "scope", 3)
    assert [(s.run_id, s.step, s.loss) for s in kept] == [("a-1", 1, 2.0), ("a-1", 2, 1.5)]
    unregistered = [s for s in train_steps(conn) if s.version is None]
    assert [(s.run_id, s.step) for s in unregistered] == [("a-2", 1)]
