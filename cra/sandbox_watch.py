"""The watchdog of a run: samples its memory and processes where no cgroup holds them and
the size of its writable folders always, kills the run over a limit or at its timeout; and
killing and reaping all of a run's processes once it ends."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cra.sandbox_argv import SANDBOX_TMP
from cra.sandbox_cgroups import Cgroups
from cra.sandbox_limits import SAMPLE_S, Enforcement, Limits
from cra.sandbox_procs import KILL_WAIT_S, kill_all, kill_uid, run_members

DISK_SAMPLE_S = 1.0  # the least time between two measures of the writable folders


def kill_run(proc: subprocess.Popen[bytes], cgroups: Cgroups, uid: int | None) -> int:
    """Kill every process of the run and wait until they are gone (reaped, so that none
    still counts against the uid); how many could not be made to go."""
    deadline = time.monotonic() + KILL_WAIT_S
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    left: set[int] = set()
    while time.monotonic() < deadline:
        if cgroups.tracker:
            left = cgroups.members()
        else:  # a zombie of cra's own uid holds nothing; the sandbox uid's wait below
            left = run_members(proc.pid, uid, zombies=False) - {proc.pid}
        if proc.poll() is None:
            left.add(proc.pid)
        if not left:
            break
        cgroups.kill()
        kill_all(left)
        time.sleep(0.01)
    proc.wait()
    if uid is not None:  # zombies still count until their parent (or init) reaps them
        return kill_uid(uid, max(0.0, deadline - time.monotonic()))
    return len(left)


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _private_tmp_bytes(pids: set[int]) -> int:
    """What the sandbox's own `/tmp` holds, seen through a process inside it."""
    host = os.stat(SANDBOX_TMP).st_dev
    for pid in pids:
        where = f"/proc/{pid}/root{SANDBOX_TMP}"
        try:
            if os.stat(where).st_dev == host:
                continue
            fs = os.statvfs(where)
        except OSError:
            continue
        return (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    return 0


def _tree_bytes(paths: Sequence[Path]) -> int:
    """The space the files under `paths` take, each file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in paths:
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(root, name))
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
    return total


class Watchdog:
    """Samples a run from a thread of cra: its memory and processes where no cgroup holds
    them, the size of its writable folders always; kills the run over a limit or at its
    timeout (and if sampling itself fails: a run is never left unwatched)."""

    def __init__(
        self,
        limits: Limits,
        cgroups: Cgroups,
        enforcement: Enforcement,
        writable: Sequence[Path],
        uid: int | None,
    ) -> None:
        self.limits, self.cgroups, self.uid = limits, cgroups, uid
        self.sample_processes = enforcement.memory == "watchdog" or (
            enforcement.processes == "watchdog"
        )
        self.writable = list(writable)
        started = time.perf_counter()
        self.baseline = _tree_bytes(self.writable)
        self.disk_every = max(DISK_SAMPLE_S, 50 * (time.perf_counter() - started))
        self.limit: str | None = None
        self.timed_out = False
        self.root = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="cra-sandbox-watchdog", daemon=True)

    def start(self, root: int) -> None:
        """Watch the run whose first process is `root`, from now until its timeout."""
        self.root = root
        self.deadline = time.monotonic() + self.limits.wall_s
        self.thread.start()

    def stop(self) -> None:
        """Stop watching (the run has ended) and wait for the thread."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _loop(self) -> None:
        try:
            self._watch()
        finally:
            if not self.done.is_set():
                self._kill()

    def _watch(self) -> None:
        next_disk = time.monotonic() + self.disk_every
        while not self.done.wait(min(SAMPLE_S, max(0.0, self.deadline - time.monotonic()))):
            if time.monotonic() >= self.deadline:
                self.timed_out = True
                return
            # The kernel kills one process at its memory limit; the run stops as a whole.
            limit = self.cgroups.limit_hit()
            if limit is None and self.sample_processes:
                limit = self._processes_over()
            if limit is None and time.monotonic() >= next_disk:
                limit = self._disk_over()
                next_disk = time.monotonic() + self.disk_every
            if limit is not None:
                self.limit = limit
                return

    def _kill(self) -> None:
        self.cgroups.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.root, signal.SIGKILL)
        kill_all(self._members())

    def _members(self) -> set[int]:
        if self.cgroups.tracker:
            return self.cgroups.members()
        return run_members(self.root, self.uid)

    def _processes_over(self) -> str | None:
        members = self._members()
        if self.cgroups.pids_kind is None and len(members) > self.limits.max_processes + 3:
            return "processes"  # + the sandbox's own bwrap/unshare, init and setpriv
        if self.cgroups.memory_kind is None:
            used = sum(_pss_bytes(pid) for pid in members) + _private_tmp_bytes(members)
            if used > self.limits.memory_mb * 1024 * 1024:
                return "memory"
        return None

    def _disk_over(self) -> str | None:
        # At the cap is over it: RLIMIT_FSIZE stops a single file right there.
        grown = _tree_bytes(self.writable) - self.baseline
        return "disk" if grown >= self.limits.scratch_mb * 1024 * 1024 else None

    def final_disk(self) -> str | None:
        """`disk` when the run ended with its writable folders at their cap: a write
        refused there (EFBIG, or SIGXFSZ) ended it, or it ended between two samples."""
        return self._disk_over()
