"""The running `cra serve` server's state: pid, where it listens, what it loaded.

It lives in `harness/serve/state.json`, written atomically by the server's owner and read
by everyone who needs to know what is served (routing, eval, promote). A state whose
process is gone is stale and removed on read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from cra.fsutil import atomic_write_text


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


def save_state(path: Path, state: ServeState) -> None:
    """Write the state to `path` (the workspace's `serve_state_path`) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")


def running_state(path: Path) -> ServeState | None:
    """The state, recorded at `path`, of a server that is still running; a stale state
    file is removed."""
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
