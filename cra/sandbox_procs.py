"""The processes of a run where no cgroup holds them: the process table, a run's tree,
session and uid, and killing them until they are gone."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

KILL_WAIT_S = 10.0  # how long a run's processes may take to die once killed


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    group: int
    session: int
    uid: int
    zombie: bool


def _proc_table() -> list[_Proc]:
    table = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            owner = os.stat(entry.path).st_uid
        except (OSError, IndexError):
            continue
        ppid, group, session = int(fields[1]), int(fields[2]), int(fields[3])
        table.append(_Proc(int(entry.name), ppid, group, session, owner, fields[0] == b"Z"))
    return table


def run_members(root: int, uid: int | None, *, zombies: bool = True) -> set[int]:
    """The run's processes without a cgroup: `root` and its descendants, its process group
    and session, and every process of the run's own uid."""
    table = [p for p in _proc_table() if zombies or not p.zombie]
    found = {p.pid for p in table if p.pid == root or root in (p.group, p.session)}
    if uid is not None:
        found |= {p.pid for p in table if p.uid == uid}
    children: dict[int, list[int]] = {}
    for p in table:
        children.setdefault(p.ppid, []).append(p.pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_all(pids: set[int]) -> None:
    """Send SIGKILL to each of `pids` that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_uid(uid: int, wait_s: float) -> int:
    """Kill every process of `uid` and wait for them to be gone; how many remain."""
    deadline = time.monotonic() + wait_s
    while True:
        left = {p.pid for p in _proc_table() if p.uid == uid}
        if not left or time.monotonic() > deadline:
            return len(left)
        kill_all(left)
        time.sleep(0.01)
