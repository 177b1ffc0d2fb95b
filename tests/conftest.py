"""Fixtures every test can use: an isolated workspace and home, real git histories,
and a real tiny model.

Before anything else is imported, HOME and every cache of the libraries the tests use
(Hugging Face, datasets, torch, triton, uv, pip, XDG) point into a temporary home made
for the session: huggingface_hub and datasets fix their cache paths when imported, even
when a test module imports them at collection. Every test then runs with `CRA_HOME`,
`HOME` and those caches pointed at its own temporary directories. A test that writes to
the real home directory fails, and so does a session that does (outside any test).
Helpers shared between tests live in `tests/helpers.py`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.helpers import REAL_HOME, changed_entries, home_env, home_snapshot

SESSION_HOME = Path(tempfile.mkdtemp(prefix="cra-tests-home-"))
_REAL_HOME_AT_START = home_snapshot(REAL_HOME)
os.environ.update(home_env(SESSION_HOME))

import dataclasses  # noqa: E402 - after the caches point into the session home
from collections.abc import Iterator  # noqa: E402
from contextlib import closing  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

from cra.workspace import Workspace, init_workspace  # noqa: E402
from tests.helpers import vllm_python  # noqa: E402

if TYPE_CHECKING:
    from cra.fixtures.history import ProjectRepo


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if anything in it, in a test or not, wrote to the real home."""
    changed = changed_entries(_REAL_HOME_AT_START, home_snapshot(REAL_HOME))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"the session wrote to the real home: {', '.join(changed)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME, CRA_HOME and every cache at a temporary directory; fail on leaks."""
    home = tmp_path / "home"
    home.mkdir()
    for name, value in home_env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CRA_HOME", str(tmp_path / "cra-home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("CRA_DEBUG", raising=False)
    before = home_snapshot(REAL_HOME)
    yield home
    changed = changed_entries(before, home_snapshot(REAL_HOME))
    if changed:
        pytest.fail(f"test wrote to the real home directory: {', '.join(changed)}")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A freshly initialised workspace, also named by CRA_HOME."""
    root = Path(os.environ["CRA_HOME"])
    return init_workspace(root).workspace


@pytest.fixture(scope="session")
def _project_repo_template(tmp_path_factory: pytest.TempPathFactory) -> ProjectRepo:
    from cra.fixtures.history import build_project_repo

    return build_project_repo(tmp_path_factory.mktemp("factory") / "tally")


@pytest.fixture
def project_repo(_project_repo_template: ProjectRepo, tmp_path: Path) -> ProjectRepo:
    """A private copy of the factory-made `tally` history (built once per session)."""
    target = tmp_path / "tally"
    shutil.copytree(_project_repo_template.path, target, symlinks=True)
    return dataclasses.replace(_project_repo_template, path=target)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny Qwen2 model directory with a trained BPE tokenizer (built once)."""
    pytest.importorskip("transformers", reason="the train extra is not installed")
    from cra.fixtures.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real local wheelhouse (pytest, its dependencies, pytest-timeout, setuptools),
    rebuilt from the running environment with no network (built once)."""
    from cra.fixtures.wheelhouse import build_wheelhouse

    dest = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(dest)
    return dest


@pytest.fixture(scope="session")
def _packed_template(
    tmp_path_factory: pytest.TempPathFactory, _project_repo_template: ProjectRepo, wheelhouse: Path
) -> Path:
    from cra.repos.pack import PackOptions, pack

    workspace = init_workspace(tmp_path_factory.mktemp("packed") / "ws").workspace
    options = PackOptions(name="tally", find_links=wheelhouse)
    return pack(workspace, str(_project_repo_template.path), options).package.root


@pytest.fixture
def packed(workspace: Workspace, _packed_template: Path) -> Path:
    """The `tally` package (factory history, packed from the local wheelhouse) in the
    test's workspace, verified and signed with its key, as if packed there; returns its
    folder (packed once per session)."""
    from cra.repos.layout import RepoPackage, register_repo
    from cra.repos.signing import sign_package, workspace_key
    from cra.repos.verify import stamp_verified

    target = workspace.repos_dir / "tally"
    shutil.copytree(_packed_template, target, symlinks=True)
    sign_package(target, workspace_key(workspace.root))
    with closing(workspace.raw_db()) as conn:
        register_repo(conn, "tally")
    stamp_verified(workspace.verified_dir, RepoPackage(target))
    return target


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A real vLLM OpenAI-compatible server (CPU build) for the tiny model, served as
    `tiny`, with LoRA and runtime adapter updates enabled (started once per session)."""
    from cra.serving.process import start_vllm

    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: run scripts/install-vllm.sh (make test does)")
    logs = tmp_path_factory.mktemp("vllm")
    model_args = ["--max-model-len", "2048", "--dtype", "float32"]
    lora_args = ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "4"]
    env = {
        "HOME": str(logs),
        "XDG_CACHE_HOME": str(logs / "cache"),
        "VLLM_CACHE_ROOT": str(logs / "vllm-cache"),
    }
    server = start_vllm(
        python=python,
        model=tiny_model_dir,
        served_model="tiny",
        log_path=logs / "server.log",
        extra_args=[*model_args, *lora_args],
        env=env,
    )
    try:
        yield server
    finally:
        server.stop()
