"""Per-stage routing: which model a request of a stage goes to now.

A stage names its adapter in `[stages]`; the request goes to the registry's active
version of that adapter when the running server has it loaded, else to the base model.
The registry is asked at every request, so a promote or rollback takes effect at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from cra.adapters.registry import active_number
from cra.config import StagesSettings
from cra.llm.client import Route, Router
from cra.serving.state import running_state


def route(conn: sqlite3.Connection, state_path: Path, stages: StagesSettings, stage: str) -> Route:
    """Where a request of `stage` goes now: the active version of the stage's adapter when
    the server whose state is at `state_path` has it loaded, else the base model."""
    state = running_state(state_path)
    if state is None:
        return None, None, None
    name = stages.adapter_for(stage)
    if name:
        version = active_number(conn, name)
        if version is not None:
            served = f"{name}@v{version}"
            if served in state.loaded:
                return served, name, version
    return state.served_model, None, None


def make_router(
    open_raw: Callable[[], sqlite3.Connection], state_path: Path, stages: StagesSettings
) -> Router:
    """A router for the LLM client that reads the registry (a fresh `open_raw()`
    connection) at every request."""

    def router(stage: str) -> Route:
        with closing(open_raw()) as conn:
            return route(conn, state_path, stages, stage)

    return router
