"""The registry with a real vLLM server (the CPU build) running: eval generates through
the server, and promote and rollback move what the server serves with the registry."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from cra.adapters import lifecycle
from cra.adapters.evaluate import evaluate
from cra.llm.routing import route
from cra.serving.state import running_state
from cra.workspace import Workspace, init_workspace, open_workspace
from tests.adapters.helpers import candidate, planted_eval, status
from tests.helpers import detached_server, served_config


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """scope v1 and v2 registered as candidates, `cra serve --detach` running."""
    from cra.fixtures.datasets import write_dataset

    tmp = tmp_path_factory.mktemp("served-registry")
    init_workspace(tmp / "ws")
    config = served_config(tiny_model_dir, drain_s=0.5, max_loras=3)
    (tmp / "ws" / "cra.toml").write_text(config)
    workspace = open_workspace(tmp / "ws")
    write_dataset(workspace)
    for seed in (1, 2):
        candidate(workspace, tmp, seed)
    with detached_server(workspace):
        yield workspace


def test_eval_generates_through_the_server_and_leaves_it_as_it_was(served: Workspace) -> None:
    """Eval generates through the running server and unloads the adapter it loaded for it."""
    result = evaluate(served, "scope@v1", limit=2, max_new_tokens=8)
    assert result["backend"] == "vllm" and result["n"] == 2
    assert set(result["metrics"]) == {"file_recall", "file_precision"}
    assert (
        "scope@v1" not in running_state(served.serve_state_path).loaded
    )  # loaded for the eval only


def test_promote_and_rollback_move_what_the_server_serves(served: Workspace) -> None:
    """Promote and rollback swap which adapter version the running server loads and routes to."""
    planted_eval(served, 1, [0.5, 0.5])
    planted_eval(served, 2, [1.0, 1.0])
    lifecycle.promote(served, "scope@v1")
    with closing(served.raw_db()) as conn:
        assert (
            route(conn, served.serve_state_path, served.config.settings.stages, "scope")[0]
            == "scope@v1"
        )
    lifecycle.promote(served, "scope@v2")
    loaded = running_state(served.serve_state_path).loaded
    assert "scope@v2" in loaded and "scope@v1" not in loaded
    with closing(served.raw_db()) as conn:
        assert (
            route(conn, served.serve_state_path, served.config.settings.stages, "scope")[0]
            == "scope@v2"
        )
    lifecycle.rollback(served, "scope")
    loaded = running_state(served.serve_state_path).loaded
    assert "scope@v1" in loaded and "scope@v2" not in loaded
    with closing(served.raw_db()) as conn:
        assert (
            route(conn, served.serve_state_path, served.config.settings.stages, "scope")[0]
            == "scope@v1"
        )
    assert status(served) == {1: "active", 2: "retired"}
