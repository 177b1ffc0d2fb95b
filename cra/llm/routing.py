"""Per-stage routing: which model a request of a stage goes to now.

A stage names its adapter in `[stages]`; the request goes to the registry's active
version of that adapter when the running server has it loaded, else to the base model.
The registry is asked at every request, so a promote or rollback takes effect at once.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

from cra.adapters.registry import active_number
from cra.llm.client import Route, Router
from cra.serving.state import running_state
from cra.workspace import Workspace


def route(workspace: Workspace, conn: sqlite3.Connection, stage: str) -> Route:
    """Where a request of `stage` goes now: the active version of the stage's adapter when
    the running server has it loaded, else the base model."""
    state = running_state(workspace)
    if state is None:
        return None, None, None
    name = workspace.config.settings.stages.adapter_for(stage)
    if name:
        version = active_number(conn, name)
        if version is not None:
            served = f"{name}@v{version}"
            if served in state.loaded:
                return served, name, version
    return state.served_model, None, None


def make_router(workspace: Workspace) -> Router:
    """A router for the LLM client that reads the registry at every request."""

    def router(stage: str) -> Route:
        with closing(workspace.raw_db()) as conn:
            return route(workspace, conn, stage)

    return router
