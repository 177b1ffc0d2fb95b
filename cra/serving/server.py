"""`cra serve`: one vLLM server for the base model, every active adapter version loaded
under its own name, and version swaps that never fail a request.

- Served names are `NAME@vN`. vLLM caches adapters by name, so a name is never reused for
  other weights: a new version is a new name.
- The server's state (pid, where it listens, what it loaded) is `harness/serve/state.json`.
- On start, every active version is loaded again (vLLM forgets runtime-loaded adapters).
- A swap (promote, rollback) loads the new version, probes it, then lets the caller switch
  the registry pointer, then unloads the old version after a drain period. A request routed
  to the old name just before its unload is routed again by the LLM client.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from cra.adapters.registry import list_versions
from cra.artefacts import (
    RANKS,
    AdapterVersion,
    IncompatibleAdapter,
    adapter_rank,
    base_model_dir,
    check_compatible,
    model_hashes,
)
from cra.config import ServeSettings
from cra.errors import UsageError
from cra.fsutil import now_iso
from cra.serving.process import ServerError, VllmServer, start_vllm
from cra.serving.state import ServeState, running_state, save_state
from cra.workspace import Workspace

Echo = Callable[[str], None]


def active_versions(conn: sqlite3.Connection, root: Path) -> list[AdapterVersion]:
    """Every active adapter version in the registry, by name."""
    return [v.served() for v in list_versions(conn, root) if v.status == "active"]


def vllm_python(serve: ServeSettings, given: str | Path | None = None) -> Path:
    """The interpreter that runs vLLM: `--python`, `[serve] python`, `$CRA_VLLM_PYTHON`,
    else `.venv-vllm/` beside cra's source tree (where `make vllm` installs it)."""
    configured = given or serve.python or os.environ.get("CRA_VLLM_PYTHON")
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


def lora_limits(conn: sqlite3.Connection, root: Path, configured_loras: int) -> tuple[int, int]:
    """(--max-lora-rank, --max-loras) from the registry: the largest rank of any candidate
    or active version, rounded up to a rank vLLM accepts; the active adapters plus one free
    slot (so a swap can hold old and new at once), unless `[serve] max_loras` says."""
    rank = 8
    active = 0
    for version in list_versions(conn, root):
        if version.status not in ("candidate", "active"):
            continue
        active += version.status == "active"
        try:
            rank = max(rank, adapter_rank(version.path))
        except IncompatibleAdapter:
            continue
    rank = next((r for r in RANKS if r >= rank), RANKS[-1])
    return rank, configured_loras or active + 1


@dataclass(frozen=True)
class StartedServer:
    """A server `start_server` started: its recorded state and the process handle."""

    state: ServeState
    server: VllmServer


def start_server(
    workspace: Workspace,
    *,
    host: str | None = None,
    port: int | None = None,
    python: str | Path | None = None,
    echo: Echo | None = None,
) -> StartedServer:
    """Start vLLM for the base model with every active version loaded; return its state
    and the process handle. Incompatible versions are refused and reported, not loaded."""
    say = echo or (lambda _msg: None)
    config = workspace.config
    existing = running_state(workspace.serve_state_path)
    if existing is not None:
        raise UsageError(
            f"a server is already running at {existing.base_url} (pid {existing.pid})",
            hint="stop it with `cra serve stop`",
        )
    interpreter = vllm_python(workspace.config.settings.serve, python)
    base = base_model_dir(workspace.config.settings.model.base, workspace.root)
    with closing(workspace.raw_db()) as conn:
        rank, loras = lora_limits(conn, workspace.root, config.settings.serve.max_loras)
        versions = active_versions(conn, workspace.root)
    limits = (rank, max(loras, 1))
    serve = workspace.config.settings.serve
    log_path = workspace.harness_dir / "serve" / "vllm.log"
    state = _initial_state(serve, log_path, base, interpreter, host=host, port=port, limits=limits)
    modules = _loadable(versions, state, say)
    say(f"starting vLLM ({interpreter}) for {base} on {state.host}:{state.port}")
    server = start_vllm(
        python=interpreter,
        model=base,
        served_model=state.served_model,
        log_path=Path(state.log_path),
        host=state.host,
        port=state.port,
        extra_args=_vllm_args(workspace.config.settings.serve, state, modules),
        wait_s=config.settings.serve.start_timeout_s,
    )
    state.pid = server.process.pid
    save_state(workspace.serve_state_path, state)
    return StartedServer(state, server)


def _initial_state(
    serve: ServeSettings,
    log_path: Path,
    base: Path,
    interpreter: Path,
    *,
    host: str | None,
    port: int | None,
    limits: tuple[int, int],
) -> ServeState:
    """The state of a server about to start, before it has a pid or loaded anything."""
    base_hash, tokenizer_hash = model_hashes(base)
    return ServeState(
        pid=0,
        host=host or serve.host,
        port=port or serve.port,
        python=str(interpreter),
        base_model=str(base),
        served_model=base.name,
        base_hash=base_hash,
        tokenizer_hash=tokenizer_hash,
        max_lora_rank=limits[0],
        max_loras=limits[1],
        log_path=str(log_path),
        started_at=now_iso(),
    )


def _loadable(versions: list[AdapterVersion], state: ServeState, say: Echo) -> list[str]:
    """`NAME@vN=PATH` of every version the server can serve, recorded as loaded in
    `state`; the others are reported and left out."""
    modules = []
    for version in versions:
        try:
            check_compatible(version, state)
        except IncompatibleAdapter as exc:
            say(f"  not loading {version.served_name}: {exc}")
            continue
        modules.append(f"{version.served_name}={version.path}")
        state.loaded[version.served_name] = str(version.path)
    return modules


def _vllm_args(serve: ServeSettings, state: ServeState, modules: list[str]) -> list[str]:
    """vLLM's LoRA and length arguments, the adapters to load, then `[serve] extra_args`."""
    lora = ["--enable-lora", "--max-lora-rank", str(state.max_lora_rank)]
    sizes = [
        "--max-loras",
        str(state.max_loras),
        "--max-model-len",
        str(serve.max_model_len),
    ]
    adapters = ["--lora-modules", *modules] if modules else []
    return [*lora, *sizes, *adapters, *serve.extra_args]


def stop_server(workspace: Workspace, timeout_s: float = 60.0) -> ServeState | None:
    """Stop the running server (its whole process group); None when none was running."""
    state = running_state(workspace.serve_state_path)
    if state is None:
        return None
    with suppress(ProcessLookupError):
        os.killpg(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while state.alive() and time.monotonic() < deadline:
        _reap(state.pid)
        time.sleep(0.2)
    if state.alive():
        with suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGKILL)
        _reap(state.pid)
    workspace.serve_state_path.unlink(missing_ok=True)
    return state


def _reap(pid: int) -> None:
    """Collect `pid` if it is our exited child, so it stops showing as alive."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _post(state: ServeState, path: str, body: dict, timeout_s: float = 120.0) -> httpx.Response:
    try:
        return httpx.post(f"http://{state.host}:{state.port}{path}", json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServerError(f"the server at {state.base_url} did not answer {path}: {exc}") from exc


def load_version(state: ServeState, version: AdapterVersion) -> None:
    """Load `version` into the running server under its served name."""
    response = _post(
        state,
        "/v1/load_lora_adapter",
        {"lora_name": version.served_name, "lora_path": str(version.path)},
    )
    if response.status_code != 200:
        raise ServerError(
            f"vLLM refused to load {version.served_name}: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )


def unload_version(state: ServeState, served_name: str) -> None:
    """Unload `served_name` from the running server."""
    response = _post(state, "/v1/unload_lora_adapter", {"lora_name": served_name})
    if response.status_code != 200:
        raise ServerError(
            f"vLLM refused to unload {served_name}: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )


def probe(state: ServeState, served_name: str) -> None:
    """One one-token request to `served_name`; raise ServerError unless it succeeds."""
    response = _post(
        state,
        "/v1/chat/completions",
        {
            "model": served_name,
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1,
            "temperature": 0.0,
        },
    )
    if response.status_code != 200:
        raise ServerError(
            f"probe of {served_name} failed: HTTP {response.status_code} {response.text[:300]}"
        )


def swap(
    workspace: Workspace,
    *,
    new: AdapterVersion | None,
    old: AdapterVersion | None,
    switch: Callable[[], None],
    echo: Echo | None = None,
) -> None:
    """Make `new` serve instead of `old` without a restart: check and load `new`, probe it,
    call `switch` (the registry update), then unload `old` after the drain period.

    Any failure before `switch` unloads what it loaded and re-raises: the old version stays
    active and serving. With no server running, only `switch` runs."""
    say = echo or (lambda _msg: None)
    state = running_state(workspace.serve_state_path)
    if state is None:
        switch()
        return
    loaded_here = False
    if new is not None:
        check_compatible(new, state)  # also when loaded: its files must still be the same
    if new is not None and new.served_name not in state.loaded:
        load_version(state, new)
        loaded_here = True
    try:
        if new is not None:
            probe(state, new.served_name)
            # Routable before the pointer moves, so no request falls back to the base.
            state.loaded[new.served_name] = str(new.path)
            save_state(workspace.serve_state_path, state)
        switch()
    except BaseException:
        if loaded_here and new is not None:
            state.loaded.pop(new.served_name, None)
            save_state(workspace.serve_state_path, state)
            try:
                unload_version(state, new.served_name)
            except ServerError as exc:
                say(f"  could not unload {new.served_name} after the failed swap: {exc}")
        raise
    say(f"  serving {new.served_name if new else 'the base model'} on {state.base_url}")
    if old is not None and old.served_name in state.loaded and (new is None or old != new):
        time.sleep(workspace.config.settings.serve.drain_s)
        try:
            unload_version(state, old.served_name)
        except ServerError as exc:
            say(f"  {exc}")
            return
        state.loaded.pop(old.served_name, None)
        save_state(workspace.serve_state_path, state)


def served_models(state: ServeState) -> list[str]:
    """The model ids the server lists (the base and every loaded adapter)."""
    try:
        data = httpx.get(f"{state.base_url}/models", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return []
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
