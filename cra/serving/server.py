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

import hashlib
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import closing, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from cra.errors import CraError, UsageError
from cra.fsutil import atomic_write_text, now_iso, sha256_file
from cra.llm.client import Route, Router
from cra.serving.process import ServerError, start_vllm
from cra.workspace import Workspace

LORA_TARGETS = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)
"""The linear projections an adapter may target: what vLLM's LoRA layers cover here."""

RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The `--max-lora-rank` values vLLM accepts."""

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)


class IncompatibleAdapter(CraError, ValueError):
    """An adapter version the running server cannot serve."""


def _digest(files: Iterable[Path], root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(files):
        sha.update(path.relative_to(root).as_posix().encode() + b"\0")
        sha.update(sha256_file(path).encode() + b"\n")
    return sha.hexdigest()


def model_hashes(model_dir: Path) -> tuple[str, str]:
    """(content hash, tokenizer/chat-template hash) of a model directory: sha256 over the
    sha256 of its config and weight files, and of its tokenizer files."""
    root = Path(model_dir)
    if not (root / "config.json").is_file():
        raise UsageError(f"{root} is not a model directory (no config.json)")
    weights = [p for p in root.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    tokenizer = [root / n for n in _TOKENIZER_FILES if (root / n).is_file()]
    return _digest([root / "config.json", *weights], root), _digest(tokenizer, root)


@dataclass(frozen=True)
class AdapterVersion:
    """One registered adapter version, as the server needs it."""

    name: str
    version: int
    path: Path
    base_model_hash: str
    tokenizer_hash: str
    files_sha256: dict[str, str]

    @property
    def served_name(self) -> str:
        """The name vLLM serves it under: `NAME@vN`, never reused for other weights."""
        return f"{self.name}@v{self.version}"


def active_versions(conn: sqlite3.Connection, root: Path) -> list[AdapterVersion]:
    """Every active adapter version in the registry, by name."""
    from cra.adapters.registry import list_versions  # the registry builds on this module

    return [v.served() for v in list_versions(conn, root) if v.status == "active"]


def adapter_rank(path: Path) -> int:
    """The LoRA rank `r` of a PEFT adapter directory."""
    config = _adapter_config(path)
    return int(config.get("r") or 0)


def _adapter_config(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IncompatibleAdapter(f"{path} has no adapter_config.json") from None
    except ValueError as exc:
        raise IncompatibleAdapter(f"{path}/adapter_config.json is not JSON: {exc}") from None


def check_files(version: AdapterVersion) -> None:
    """Refuse a version whose files differ from the sha256 recorded at registration."""
    for rel, expected in sorted(version.files_sha256.items()):
        path = version.path / rel
        if not path.is_file():
            raise IncompatibleAdapter(f"{version.served_name}: file {rel} is missing")
        if sha256_file(path) != expected:
            raise IncompatibleAdapter(
                f"{version.served_name}: file {rel} changed since it was registered",
                hint="an adapter version is immutable: train and register a new version",
            )


def check_compatible(version: AdapterVersion, state: ServeState) -> None:
    """Refuse, with the reason, a version the running server cannot serve correctly."""
    check_files(version)
    config = _adapter_config(version.path)
    rank = int(config.get("r") or 0)
    if rank > state.max_lora_rank:
        raise IncompatibleAdapter(
            f"{version.served_name}: rank {rank} > the server's --max-lora-rank "
            f"{state.max_lora_rank}",
            hint="restart `cra serve` so it sizes its LoRA slots from the registry",
        )
    if config.get("modules_to_save"):
        raise IncompatibleAdapter(
            f"{version.served_name}: has modules_to_save {config['modules_to_save']}, "
            "which vLLM does not serve"
        )
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    unsupported = sorted(set(targets) - LORA_TARGETS)
    if unsupported:
        raise IncompatibleAdapter(
            f"{version.served_name}: targets unsupported modules {', '.join(unsupported)}"
        )
    if version.base_model_hash != state.base_hash:
        raise IncompatibleAdapter(
            f"{version.served_name}: trained on another base model "
            f"(hash {version.base_model_hash[:12]}, served {state.base_hash[:12]})"
        )
    if version.tokenizer_hash != state.tokenizer_hash:
        raise IncompatibleAdapter(
            f"{version.served_name}: trained with another tokenizer or chat template "
            f"(hash {version.tokenizer_hash[:12]}, served {state.tokenizer_hash[:12]})"
        )


@dataclass
class ServeState:
    """What `cra serve` started, written to `harness/serve/state.json`."""

    pid: int
    host: str
    port: int
    python: str
    base_model: str
    served_model: str
    base_hash: str
    tokenizer_hash: str
    max_lora_rank: int
    max_loras: int
    log_path: str
    started_at: str
    loaded: dict[str, str] = field(default_factory=dict)  # served name -> adapter path

    @property
    def base_url(self) -> str:
        """The OpenAI API root, `http://HOST:PORT/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    def alive(self) -> bool:
        """Whether the server process still exists."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def healthy(self) -> bool:
        """Whether `/health` answers 200."""
        try:
            url = f"http://{self.host}:{self.port}/health"
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


def state_path(workspace: Workspace) -> Path:
    """Where the running server's state lives."""
    return workspace.harness_dir / "serve" / "state.json"


def save_state(workspace: Workspace, state: ServeState) -> None:
    """Write the state atomically."""
    path = state_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")


def running_state(workspace: Workspace) -> ServeState | None:
    """The state of a server that is still running; a stale state file is removed."""
    path = state_path(workspace)
    try:
        state = ServeState(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not state.alive():
        path.unlink(missing_ok=True)
        return None
    return state


def vllm_python(workspace: Workspace, given: str | Path | None = None) -> Path:
    """The interpreter that runs vLLM: `--python`, `[serve] python`, `$CRA_VLLM_PYTHON`,
    else `.venv-vllm/` beside cra's source tree (where `make vllm` installs it)."""
    configured = given or workspace.config["serve.python"] or os.environ.get("CRA_VLLM_PYTHON")
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


def base_model_dir(workspace: Workspace) -> Path:
    """The base model directory named by `[model] base`."""
    base = workspace.config["model.base"]
    if not base:
        raise UsageError(
            "no base model configured", hint="set [model] base in cra.toml to a local model path"
        )
    path = Path(base).expanduser()
    if not path.is_absolute():
        path = workspace.root / path
    if not (path / "config.json").is_file():
        raise UsageError(f"[model] base {path} is not a model directory (no config.json)")
    return path


def lora_limits(conn: sqlite3.Connection, root: Path, configured_loras: int) -> tuple[int, int]:
    """(--max-lora-rank, --max-loras) from the registry: the largest rank of any candidate
    or active version, rounded up to a rank vLLM accepts; the active adapters plus one free
    slot (so a swap can hold old and new at once), unless `[serve] max_loras` says."""
    from cra.adapters.registry import list_versions

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


Echo = Callable[[str], None]


def start_server(
    workspace: Workspace,
    *,
    host: str | None = None,
    port: int | None = None,
    python: str | Path | None = None,
    echo: Echo | None = None,
) -> tuple[ServeState, object]:
    """Start vLLM for the base model with every active version loaded; return its state
    and the process handle. Incompatible versions are refused and reported, not loaded."""
    say = echo or (lambda _msg: None)
    config = workspace.config
    existing = running_state(workspace)
    if existing is not None:
        raise UsageError(
            f"a server is already running at {existing.base_url} (pid {existing.pid})",
            hint="stop it with `cra serve stop`",
        )
    interpreter = vllm_python(workspace, python)
    base = base_model_dir(workspace)
    base_hash, tokenizer_hash = model_hashes(base)
    with closing(workspace.raw_db()) as conn:
        rank, loras = lora_limits(conn, workspace.root, config["serve.max_loras"])
        versions = active_versions(conn, workspace.root)
    state = ServeState(
        pid=0, host=host or config["serve.host"], port=port or config["serve.port"],
        python=str(interpreter), base_model=str(base), served_model=base.name,
        base_hash=base_hash, tokenizer_hash=tokenizer_hash, max_lora_rank=rank,
        max_loras=max(loras, 1),
        log_path=str(workspace.harness_dir / "serve" / "vllm.log"), started_at=now_iso(),
    )  # fmt: skip
    modules = []
    for version in versions:
        try:
            check_compatible(version, state)
        except IncompatibleAdapter as exc:
            say(f"  not loading {version.served_name}: {exc}")
            continue
        modules.append(f"{version.served_name}={version.path}")
        state.loaded[version.served_name] = str(version.path)
    args = [
        "--enable-lora", "--max-lora-rank", str(state.max_lora_rank),
        "--max-loras", str(state.max_loras), "--max-model-len", str(config["serve.max_model_len"]),
        *(["--lora-modules", *modules] if modules else []),
        *config["serve.extra_args"],
    ]  # fmt: skip
    say(f"starting vLLM ({interpreter}) for {base} on {state.host}:{state.port}")
    server = start_vllm(
        python=interpreter,
        model=base,
        served_model=state.served_model,
        log_path=Path(state.log_path),
        host=state.host,
        port=state.port,
        extra_args=args,
        wait_s=config["serve.start_timeout_s"],
    )
    state.pid = server.process.pid
    save_state(workspace, state)
    return state, server


def stop_server(workspace: Workspace, timeout_s: float = 60.0) -> ServeState | None:
    """Stop the running server (its whole process group); None when none was running."""
    state = running_state(workspace)
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
    state_path(workspace).unlink(missing_ok=True)
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
        {"model": served_name, "messages": [{"role": "user", "content": "ping"}],
         "max_tokens": 1, "temperature": 0.0},
    )  # fmt: skip
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
    state = running_state(workspace)
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
            save_state(workspace, state)
        switch()
    except BaseException:
        if loaded_here and new is not None:
            state.loaded.pop(new.served_name, None)
            save_state(workspace, state)
            try:
                unload_version(state, new.served_name)
            except ServerError as exc:
                say(f"  could not unload {new.served_name} after the failed swap: {exc}")
        raise
    say(f"  serving {new.served_name if new else 'the base model'} on {state.base_url}")
    if old is not None and old.served_name in state.loaded and (new is None or old != new):
        time.sleep(workspace.config["serve.drain_s"])
        try:
            unload_version(state, old.served_name)
        except ServerError as exc:
            say(f"  {exc}")
            return
        state.loaded.pop(old.served_name, None)
        save_state(workspace, state)


def route(workspace: Workspace, conn: sqlite3.Connection, stage: str) -> Route:
    """Where a request of `stage` goes now: the active version of the stage's adapter when
    the running server has it loaded, else the base model."""
    state = running_state(workspace)
    if state is None:
        return None, None, None
    name = workspace.config.values.get(f"stages.{stage}")
    if name:
        row = conn.execute(
            "SELECT version FROM adapter_versions WHERE name = ? AND status = 'active'", (name,)
        ).fetchone()
        if row is not None:
            served = f"{name}@v{row[0]}"
            if served in state.loaded:
                return served, name, int(row[0])
    return state.served_model, None, None


def make_router(workspace: Workspace) -> Router:
    """A router for the LLM client that reads the registry at every request."""

    def router(stage: str) -> Route:
        with closing(workspace.raw_db()) as conn:
            return route(workspace, conn, stage)

    return router


def served_models(state: ServeState) -> list[str]:
    """The model ids the server lists (the base and every loaded adapter)."""
    try:
        data = httpx.get(f"{state.base_url}/models", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return []
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
