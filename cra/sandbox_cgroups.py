"""The cgroups of one run: a cgroup v2 with memory and pids limits where delegated, else
cgroup v1 memory and pids ones; how the run's processes are found and killed there."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cra.sandbox_limits import Limits
from cra.sandbox_procs import kill_all

_CGROUP_RUNS = iter(range(1, 1 << 62))


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, type, super options) of the cgroup file systems."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
        for line in fh:
            before, _, after = line.partition(" - ")
            kind, _, options = [*after.split(), "", "", ""][:3]
            if kind in ("cgroup", "cgroup2"):
                found.append((before.split()[4], kind, set(options.split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 one."""
    own = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name.removeprefix("name=")] = path
    return own


@dataclass
class Cgroups:
    """The cgroups one run's processes are in; empty where none could be made."""

    dirs: list[Path] = field(default_factory=list)
    procs: list[Path] = field(default_factory=list)
    memory: Path | None = None
    memory_kind: str | None = None
    pids: Path | None = None
    pids_kind: str | None = None
    tracker: Path | None = None
    tracker_kind: str | None = None

    @classmethod
    def make(cls, limits: Limits) -> Cgroups:
        """A cgroup v2 with memory and pids where delegated, else v1 memory and pids ones
        (a v2 one without controllers still tracks the run); what cannot be made, isn't."""
        made = cls()
        name = f"cra-run-{os.getpid()}-{next(_CGROUP_RUNS)}"
        own, mounts = _own_cgroups(), _mounts()
        for point, kind, _ in mounts:
            if kind == "cgroup2" and "" in own:
                made._v2(Path(point) / own[""].lstrip("/") / name, limits)
                break
        for controller in ("memory", "pids"):
            if getattr(made, f"{controller}_kind") is not None or controller not in own:
                continue
            for point, kind, options in mounts:
                if kind == "cgroup" and controller in options:
                    made._v1(controller, Path(point) / own[controller].lstrip("/") / name, limits)
                    break
        return made

    def _v2(self, path: Path, limits: Limits) -> None:
        try:
            enabled = (path.parent / "cgroup.subtree_control").read_text().split()
            path.mkdir()
        except OSError:
            return
        self._add(path, "cgroup v2")
        memory = limits.memory_mb * 1024 * 1024
        with contextlib.suppress(OSError):
            if "memory" in enabled:
                (path / "memory.max").write_text(str(memory))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
                self.memory, self.memory_kind = path, "cgroup v2"
        with contextlib.suppress(OSError):
            if "pids" in enabled:
                (path / "pids.max").write_text(str(limits.max_processes + 3))
                self.pids, self.pids_kind = path, "cgroup v2"

    def _v1(self, controller: str, path: Path, limits: Limits) -> None:
        try:
            path.mkdir()
        except OSError:
            return
        try:
            if controller == "memory":
                memory = str(limits.memory_mb * 1024 * 1024)
                (path / "memory.limit_in_bytes").write_text(memory)
                if (path / "memory.memsw.limit_in_bytes").exists():  # no swap beyond it
                    (path / "memory.memsw.limit_in_bytes").write_text(memory)
                self.memory, self.memory_kind = path, "cgroup v1"
            else:
                (path / "pids.max").write_text(str(limits.max_processes + 3))
                self.pids, self.pids_kind = path, "cgroup v1"
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return
        self._add(path, "cgroup v1")

    def _add(self, path: Path, kind: str) -> None:
        self.dirs.append(path)
        self.procs.append(path / "cgroup.procs")
        if self.tracker is None:
            self.tracker, self.tracker_kind = path, kind

    def members(self) -> set[int]:
        """The run's processes still in its cgroup."""
        if self.tracker is None:
            return set()
        try:
            return {int(line) for line in (self.tracker / "cgroup.procs").read_text().split()}
        except (OSError, ValueError):
            return set()

    def kill(self) -> None:
        """Kill every process in the run's cgroup (at once where the kernel can)."""
        if self.tracker is None:
            return
        with contextlib.suppress(OSError):
            if (self.tracker / "cgroup.kill").exists():
                (self.tracker / "cgroup.kill").write_text("1")
                return
        kill_all(self.members())

    def limit_hit(self) -> str | None:
        """`memory` when the kernel killed a process of the run for its memory limit."""
        if self.memory is None:
            return None
        name = "memory.events" if self.memory_kind == "cgroup v2" else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return "memory"
        return None

    def close(self) -> None:
        """Remove the run's cgroups (empty by now)."""
        for path in reversed(self.dirs):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
