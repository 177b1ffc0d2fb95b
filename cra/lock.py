"""One writer at a time per workspace: an OS advisory lock on `db/writer.lock`.

Commands that write to a workspace (mining, planning, validating, grading, packing,
importing, building environments) hold an exclusive `flock` on the lock file for their
whole run. The kernel releases it when the process ends, however it ends, so a crash or
`kill -9` never leaves a stale lock. A second writer refuses at once with one line that
names the holder (read from the file, which the holder rewrites on taking it); commands
that only read take no lock.

The lock is re-entrant within one process: a command that calls another writing step
keeps the one lock it holds (`flock` would otherwise conflict with itself across two
open file descriptions).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cra.errors import CraError

LOCK_NAME = "writer.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a workspace's lock: the command, its process, host and start time."""

    command: str
    pid: int | None
    host: str | None
    started: str | None

    def describe(self) -> str:
        """`cra harness validate (pid 12, started 2024-…)`, with what is known."""
        facts = []
        if self.pid is not None:
            facts.append(f"pid {self.pid}" + (f" on {self.host}" if self.host else ""))
        if self.started:
            facts.append(f"started {self.started}")
        return self.command + (f" ({', '.join(facts)})" if facts else "")


class WorkspaceBusy(CraError, BlockingIOError):
    """Another process holds the workspace's writer lock."""

    def __init__(self, holder: Holder, *, path: Path) -> None:
        super().__init__(
            f"another {holder.describe()} holds this workspace",
            hint="wait for it to finish or stop it; commands that only read "
            "(status, list, show) work meanwhile",
        )
        self.holder = holder
        self.path = path


@dataclass
class _Held:
    fd: int
    depth: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def read_holder(path: Path) -> Holder:
    """The holder recorded in the lock file at `path` (fields unknown when unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(
            str(data["command"]),
            int(data["pid"]),
            str(data.get("host") or "") or None,
            str(data.get("started") or "") or None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return Holder("cra process", None, None, None)


def _take(path: Path, command: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkspaceBusy(read_holder(path), path=path) from None
    except BaseException:
        os.close(fd)
        raise
    record = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    return fd


@contextmanager
def writer_lock(lock_path: Path, command: str) -> Iterator[bool]:
    """Hold the exclusive lock at `lock_path` for the block, or raise WorkspaceBusy.

    Yields True when this call took the lock, False when this process already held it
    (an outer block of the same process keeps it until it ends).
    """
    key = Path(lock_path).absolute()
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
        else:
            _held[key] = _Held(_take(key, command), 1)
    try:
        yield held is None
    finally:
        with _guard:
            entry = _held[key]
            entry.depth -= 1
            if entry.depth == 0:
                del _held[key]
                os.close(entry.fd)  # releases the flock
