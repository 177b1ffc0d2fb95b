"""The loop turns to the next repository: on convergence before min_hours (a pivot event
with its reason), and every `widen_every` cycles; the real ingest step mines one package
per cycle, the next unmined one of the queue on a pivot."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.loop.decide import StopReason
from cra.loop.run import start_loop
from cra.loop.steps import DEFAULT_STEPS
from cra.workspace import Workspace
from tests.loop.helpers import pack_copy, recorded

SECOND = "tally-b"
STEPS = tuple(s for s in DEFAULT_STEPS if s.name in ("ingest", "harness", "promote", "check"))
"""The real steps that need no model: nothing is trained, so no cycle promotes."""


@pytest.fixture
def two(packed: Path, project_repo, wheelhouse: Path, workspace: Workspace) -> Workspace:
    """A workspace with two packages: `tally` and a copy of its history as `tally-b`."""
    pack_copy(workspace, project_repo.path, wheelhouse, SECOND)
    return workspace


def _ingested(rec) -> list[tuple[str | None, int]]:
    return [
        (s.outputs.get("repo"), int(s.counts.get("new", -1)))
        for s in rec.steps
        if s.step == "ingest"
    ]


def test_convergence_on_the_first_repository_pivots_to_the_second(two) -> None:
    """With no promotion for `patience` cycles on `tally` before min_hours, the loop
    pivots to the unmined `tally-b` (a pivot event saying why), mines it, converges there
    too and, with the queue empty, ends as converged."""
    limits = {"patience": 2, "max_cycles": 8, "min_hours": 1.0, "tasks_per_cycle": 0}
    outcome = start_loop(two, limits, steps=STEPS)
    assert outcome.reason is StopReason.CONVERGED
    rec = recorded(two)
    ingested = _ingested(rec)
    assert [repo for repo, _ in ingested] == ["tally", "tally", SECOND, SECOND]
    assert ingested[0][1] > 0 and ingested[1][1] == 0 and ingested[2][1] > 0
    assert [c.summary["pivot"] for c in rec.cycles] == [False, False, True, False]
    (pivot,) = [e for e in rec.events if e.kind == "pivot"]
    assert pivot.payload["detail"] == (
        f"no promotion beyond the noise floor in 2 cycles: pivoting to {SECOND}"
    )
    harness = [s for s in rec.steps if s.step == "harness"]
    assert all(
        s.status == "skipped" and "tasks_per_cycle is 0" in (s.reason or "") for s in harness
    )


def test_widen_every_one_mines_a_new_repository_each_cycle(two) -> None:
    """With widen_every 1 each cycle mines the next unmined package; once none is left
    the usual rules apply (here: no promotion for `patience` cycles, converged)."""
    limits = {"patience": 1, "widen_every": 1, "max_cycles": 8, "tasks_per_cycle": 0}
    outcome = start_loop(two, limits, steps=STEPS)
    assert outcome.reason is StopReason.CONVERGED
    rec = recorded(two)
    assert [repo for repo, _ in _ingested(rec)] == ["tally", SECOND]
    (pivot,) = [e for e in rec.events if e.kind == "pivot"]
    assert pivot.payload["detail"] == (
        f"1 cycle(s) on this repository (widen_every 1): pivoting to {SECOND}"
    )
