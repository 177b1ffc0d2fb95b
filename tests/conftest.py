"""Fixtures every test can use: an isolated workspace and home, real git histories,
and a real tiny model.

Every test runs with `CRA_HOME` and `HOME` pointed at temporary directories. A test
that writes to the real home directory fails.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cra.workspace import Workspace, init_workspace

if TYPE_CHECKING:
    from cra.fixtures.history import ProjectRepo

REAL_HOME = Path(os.path.expanduser("~")).resolve()
# Where tools write when they think HOME is theirs; a change here means a leak.
WATCHED = (".cache", ".config", ".local", ".cra", ".gitconfig", ".huggingface")


def home_snapshot(home: Path) -> dict[str, float]:
    """mtime of each watched entry of `home` and of its direct children."""
    snap: dict[str, float] = {}
    for name in WATCHED:
        top = home / name
        if not top.exists():
            continue
        snap[name] = top.stat().st_mtime
        if top.is_dir():
            for child in top.iterdir():
                try:
                    snap[f"{name}/{child.name}"] = child.stat().st_mtime
                except FileNotFoundError:
                    continue
    return snap


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME, CRA_HOME and the XDG folders at a temporary directory; fail on leaks."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CRA_HOME", str(tmp_path / "cra-home"))
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("CRA_DEBUG", raising=False)
    before = home_snapshot(REAL_HOME)
    yield home
    after = home_snapshot(REAL_HOME)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
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
    test's workspace, verified; returns its folder (packed once per session)."""
    from cra.repos.layout import RepoPackage, register_repo
    from cra.repos.verify import stamp_verified

    target = workspace.repos_dir / "tally"
    shutil.copytree(_packed_template, target, symlinks=True)
    with closing(workspace.raw_db()) as conn:
        register_repo(conn, "tally")
    stamp_verified(workspace, RepoPackage(target))
    return target


REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_VLLM_VENV = REPO_ROOT / ".venv-vllm"


def vllm_python() -> Path | None:
    """The interpreter that has vLLM: `$CRA_VLLM_PYTHON`, else `.venv-vllm/` of the
    repository (what `scripts/install-vllm.sh` and `make test` create)."""
    configured = os.environ.get("CRA_VLLM_PYTHON")
    candidate = Path(configured) if configured else REAL_VLLM_VENV / "bin" / "python"
    return candidate if candidate.exists() else None


def run_cra(workspace: Workspace, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`cra -w WORKSPACE ARGS...` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cra", "-w", str(workspace.root), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def served_config(base: Path, *, drain_s: float, max_loras: int = 0) -> str:
    """The `cra.toml` of a workspace that serves `base` with the real vLLM on a free port
    (float32, short contexts); skips the test where vLLM is not installed."""
    from cra.serving.process import free_port

    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: run scripts/install-vllm.sh (make test does)")
    return (
        f'[model]\nbase = "{base}"\n'
        f'[serve]\npython = "{python}"\nport = {free_port()}\nmax_model_len = 1024\n'
        f'drain_s = {drain_s}\nmax_loras = {max_loras}\nextra_args = ["--dtype", "float32"]\n'
    )


@contextmanager
def detached_server(workspace: Workspace) -> Iterator[Workspace]:
    """`cra serve --detach` on `workspace` for the block, `cra serve stop` after it."""
    started = run_cra(workspace, "serve", "--detach")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield workspace
    finally:
        run_cra(workspace, "serve", "stop")


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A real vLLM OpenAI-compatible server (CPU build) for the tiny model, served as
    `tiny`, with LoRA and runtime adapter updates enabled (started once per session)."""
    from cra.serving.process import start_vllm

    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: run scripts/install-vllm.sh (make test does)")
    logs = tmp_path_factory.mktemp("vllm")
    server = start_vllm(
        python=python,
        model=tiny_model_dir,
        served_model="tiny",
        log_path=logs / "server.log",
        extra_args=["--max-model-len", "2048", "--dtype", "float32", "--enable-lora",
                    "--max-lora-rank", "16", "--max-loras", "4"],
        env={"HOME": str(logs), "XDG_CACHE_HOME": str(logs / "cache"),
             "VLLM_CACHE_ROOT": str(logs / "vllm-cache")},
    )  # fmt: skip
    try:
        yield server
    finally:
        server.stop()
