"""The registry with a real vLLM server (the CPU build) running: eval generates through
the server, and promote and rollback move what the server serves with the registry."""

from __future__ import annotations

import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from cra.adapters import lifecycle
from cra.adapters.evaluate import evaluate
from cra.serving.process import free_port
from cra.serving.server import route, running_state
from cra.workspace import Workspace, init_workspace, open_workspace
from tests.adapters.helpers import candidate, planted_eval, status


def cra(workspace: Workspace, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cra", "-w", str(workspace.root), *args],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """scope v1 and v2 registered as candidates, `cra serve --detach` running."""
    from cra.fixtures.datasets import write_dataset
    from tests.conftest import vllm_python

    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: run scripts/install-vllm.sh (make test does)")
    tmp = tmp_path_factory.mktemp("served-registry")
    init_workspace(tmp / "ws")
    (tmp / "ws" / "cra.toml").write_text(
        f'[model]\nbase = "{tiny_model_dir}"\n'
        f'[serve]\npython = "{python}"\nport = {free_port()}\nmax_model_len = 1024\n'
        'drain_s = 0.5\nmax_loras = 3\nextra_args = ["--dtype", "float32"]\n'
    )
    workspace = open_workspace(tmp / "ws")
    write_dataset(workspace)
    for seed in (1, 2):
        candidate(workspace, tmp, seed)
    started = cra(workspace, "serve", "--detach")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield workspace
    finally:
        cra(workspace, "serve", "stop")


def test_eval_generates_through_the_server_and_leaves_it_as_it_was(served: Workspace) -> None:
    result = evaluate(served, "scope@v1", limit=2, max_new_tokens=8)
    assert result["backend"] == "vllm" and result["n"] == 2
    assert set(result["metrics"]) == {"file_recall", "file_precision"}
    assert "scope@v1" not in running_state(served).loaded  # loaded for the eval only


def test_promote_and_rollback_move_what_the_server_serves(served: Workspace) -> None:
    planted_eval(served, 1, [0.5, 0.5])
    planted_eval(served, 2, [1.0, 1.0])
    lifecycle.promote(served, "scope@v1")
    with closing(served.raw_db()) as conn:
        assert route(served, conn, "scope")[0] == "scope@v1"
    lifecycle.promote(served, "scope@v2")
    loaded = running_state(served).loaded
    assert "scope@v2" in loaded and "scope@v1" not in loaded
    with closing(served.raw_db()) as conn:
        assert route(served, conn, "scope")[0] == "scope@v2"
    lifecycle.rollback(served, "scope")
    loaded = running_state(served).loaded
    assert "scope@v1" in loaded and "scope@v2" not in loaded
    with closing(served.raw_db()) as conn:
        assert route(served, conn, "scope")[0] == "scope@v1"
    assert status(served) == {1: "active", 2: "retired"}
