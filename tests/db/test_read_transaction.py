"""`read_transaction`: every read in it sees one committed state while a writer commits."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from cra.db import open_raw
from cra.db.connection import connect_readonly, read_transaction
from cra.db.train_steps import TrainStep, latest_step, record_step, step_count


def test_reads_in_one_read_transaction_see_one_snapshot(tmp_path: Path) -> None:
    """A step committed by another connection during the block is not seen inside it,
    and is seen by the next read transaction; the block leaves no transaction open."""
    path = tmp_path / "raw.db"
    with closing(open_raw(path)) as writer:
        record_step(writer, TrainStep("r", "scope", "sft", 1, loss=1.0), "2026-01-01")
        with closing(connect_readonly(path, busy_timeout_ms=5000)) as reader:
            with read_transaction(reader):
                before = step_count(reader)
                record_step(writer, TrainStep("r", "scope", "sft", 2, loss=0.5), "2026-01-02")
                still = (step_count(reader), latest_step(reader))
            assert not reader.in_transaction
            with read_transaction(reader):
                after = (step_count(reader), latest_step(reader))
    assert before == 1 and still[0] == 1 and still[1] is not None and still[1].step == 1
    assert after[0] == 2 and after[1] is not None and after[1].step == 2
