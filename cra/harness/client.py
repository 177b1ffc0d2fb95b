"""The LLM client `cra harness run` plans with."""

from __future__ import annotations

import os
import sqlite3

from cra.errors import UsageError
from cra.llm.client import LLMClient
from cra.llm.routing import make_router
from cra.serving.state import running_state
from cra.workspace import Workspace


def make_client(workspace: Workspace, conn: sqlite3.Connection, run_id: int | None) -> LLMClient:
    """The LLM client `cra.toml` configures, checked to be reachable."""
    config = workspace.config
    key_var = config.settings.llm.api_key_env
    client = LLMClient(
        endpoint=config.settings.llm.endpoint,
        model=config.settings.llm.model,
        conn=conn,
        api_key=os.environ.get(key_var) if key_var else None,
        timeout_s=config.settings.llm.timeout_s,
        max_retries=config.settings.llm.max_retries,
        run_id=run_id,
    )

    state = running_state(workspace.serve_state_path)
    if state is not None and client.endpoint == state.base_url:
        client.router = make_router(
            workspace.raw_db, workspace.serve_state_path, workspace.config.settings.stages
        )  # each stage to its adapter's active version
        client.model = client.model or state.served_model
    served = client.models()
    if not client.model:
        if not served:
            client.close()
            raise UsageError(
                f"{client.endpoint} serves no model", hint="set [llm] model in cra.toml"
            )
        client.model = served[0]
    return client
