"""Loaded as `sitecustomize` by the loop processes a kill test starts (this folder on
their PYTHONPATH): with CRA_PAUSE_STEP=NAME, step NAME of cra's default cycle does all
its work, then creates the file CRA_PAUSE_FILE and sleeps before it returns, so the test
SIGKILLs the loop while that step is recorded as running, however quick the step is and
however loaded the machine (no timing to win)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _install(name: str, marker: Path) -> None:
    try:
        from cra.loop import steps
    except ImportError:  # a process that is not cra's
        return

    def paused(step: steps.Step) -> steps.Step:
        def run(ctx: steps.StepContext) -> steps.StepResult:
            result = step.run(ctx)
            marker.touch()
            time.sleep(3600)
            return result

        return steps.FunctionStep(step.name, run)

    steps.DEFAULT_STEPS = tuple(paused(s) if s.name == name else s for s in steps.DEFAULT_STEPS)


if os.environ.get("CRA_PAUSE_STEP") and os.environ.get("CRA_PAUSE_FILE"):
    _install(os.environ["CRA_PAUSE_STEP"], Path(os.environ["CRA_PAUSE_FILE"]))
