"""Starting a server process: an interrupt while waiting for it to become healthy leaves
no server behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cra.serving.process import start_vllm


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_while_the_server_starts_stops_it(tmp_path: Path) -> None:
    """A KeyboardInterrupt during the health wait stops the started process group."""
    pid_file = tmp_path / "pid"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    python.chmod(0o755)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    previous = signal.signal(signal.SIGALRM, _interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            start_vllm(
                python=python, model=model, served_model="m", log_path=tmp_path / "log", wait_s=60
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
