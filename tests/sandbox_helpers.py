"""Helpers for the sandbox tests: a run of Python code in a real sandbox, and what the
host sees of it (processes left, shared memory)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cra import sandbox
from cra.sandbox import Limits, SandboxResult, run_sandboxed

UID = 61000
PYTHON = os.path.realpath(sys.executable)
PREFIX = Path(PYTHON).parents[1]


def available(isolation: str) -> bool:
    """Whether `isolation` runs on this machine."""
    return sandbox.probe(isolation, sandbox.sandbox_uid(UID)) is None


def run_code(
    base: Path, code: str, isolation: str, limits: Limits, *, enforce: str = "auto"
) -> tuple[SandboxResult, Path]:
    """Run `code` with the sandbox's interpreter, as validation runs tests: a tree copy,
    HOME and TMPDIR writable, the interpreter read-only. Returns the result and the run's
    folder."""
    run = base / "run"
    work, home, tmp = run / "work", run / "home", run / "tmp"
    for folder in (work, home, tmp):
        folder.mkdir(parents=True)
    uid = sandbox.sandbox_uid(UID)
    sandbox.prepare_owned([run], uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
    result = run_sandboxed(
        [PYTHON, "-c", code],
        isolation=isolation,
        cwd=work,
        writable=[work, home, tmp],
        readonly=[PREFIX],
        env=env,
        limits=limits,
        logs=base / "logs",
        uid=uid,
        enforce=enforce,
    )
    return result, run


def alive_with(marker: str) -> list[int]:
    """The pids of live (not zombie) processes whose command line holds `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
            state = Path(entry.path, "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry.name))
    return found


def shmem_bytes() -> int:
    """The host's shared memory (tmpfs included), from /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Shmem line in /proc/meminfo")


@contextmanager
def shmem_peak() -> Iterator[list[int]]:
    """Samples the host's shared memory while the block runs; yields [start, peak]."""
    seen = [shmem_bytes(), shmem_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            seen[1] = max(seen[1], shmem_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
