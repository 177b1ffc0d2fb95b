"""Start, probe and stop a vLLM OpenAI-compatible server process.

The server runs from its own interpreter (often a separate virtualenv: vLLM pins torch
and transformers builds of its own), with usage statistics and hub access off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cra.errors import CraError


class ServerError(CraError, RuntimeError):
    """The vLLM server could not be started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment vLLM runs in: offline, no usage statistics, runtime LoRA updates."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
        VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    )
    env.update(extra or {})
    return env


@dataclass
class VllmServer:
    """A running vLLM server: its process, where it listens, and its log file."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    served_model: str
    args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """The OpenAI API root, `http://HOST:PORT/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    def healthy(self) -> bool:
        """Whether `/health` answers 200."""
        try:
            return (
                httpx.get(f"http://{self.host}:{self.port}/health", timeout=2.0).status_code == 200
            )
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout_s: float) -> None:
        """Block until healthy; raise ServerError with the log's tail if it dies or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"vLLM exited with code {self.process.returncode} while starting:\n"
                    f"{self.log_tail()}",
                    hint=f"see {self.log_path}",
                )
            if self.healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise ServerError(
            f"vLLM did not become healthy within {timeout_s:.0f} s:\n{self.log_tail()}",
            hint=f"see {self.log_path}",
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after `timeout_s`."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass


def start_vllm(
    *,
    python: Path,
    model: Path,
    served_model: str,
    log_path: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wait_s: float = 300.0,
) -> VllmServer:
    """Start `python -m vllm.entrypoints.openai.api_server` for `model` and wait until it
    is healthy."""
    if not Path(python).exists():
        raise ServerError(
            f"no Python interpreter at {python}",
            hint="install vLLM with scripts/install-vllm.sh, or pass --python",
        )
    if not (Path(model) / "config.json").is_file():
        raise ServerError(f"{model} is not a model directory (no config.json)")
    port = port or free_port(host)
    args = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_model,
        "--host",
        host,
        "--port",
        str(port),
        "--disable-log-stats",
        *(extra_args or []),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=server_env(env), start_new_session=True
    )
    log.close()
    server = VllmServer(process, host, port, log_path, served_model, args)
    try:
        server.wait_healthy(wait_s)
    except BaseException:  # Ctrl-C or a caller's timeout while starting: leave no server
        server.stop()
        raise
    return server
