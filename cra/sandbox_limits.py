"""What one sandboxed run may use (`Limits`), and how those limits held for it
(`Enforcement`): in a cgroup, by RLIMIT_NPROC, or sampled by cra's watchdog."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_S = 0.1  # how often the watchdog samples a run without a memory cgroup
SCRATCH_PER_MEMORY = 4  # a run may write 4 x memory_mb to its writable folders


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use, all its processes together.

    `memory_mb` covers the processes' memory and what they keep in the sandbox's `/tmp`;
    `max_processes` counts every process of the run; `disk_mb` is what the run may add to
    its writable folders (default: `SCRATCH_PER_MEMORY` x `memory_mb`)."""

    wall_s: float
    memory_mb: int
    max_processes: int
    cpu_s: int
    disk_mb: int | None = None

    def __post_init__(self) -> None:
        for name in ("wall_s", "memory_mb", "max_processes", "cpu_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name} must be greater than 0, got {value!r}")
        if self.disk_mb is not None and not self.disk_mb > 0:
            raise ValueError(f"Limits.disk_mb must be greater than 0, got {self.disk_mb!r}")

    @property
    def scratch_mb(self) -> int:
        """What the run may write to its writable folders, in MiB."""
        return self.disk_mb if self.disk_mb is not None else SCRATCH_PER_MEMORY * self.memory_mb


@dataclass(frozen=True)
class Enforcement:
    """How a run's limits held for the whole sandbox: `cgroup v2`, `cgroup v1` or
    `watchdog` (sampled by cra) for memory and for processes, and how the run's processes
    were found to be killed (a cgroup, else the process tree and the run's own uid)."""

    memory: str
    processes: str
    tracking: str
    process_limit: int  # the per-uid RLIMIT_NPROC the run had
    uid: int | None

    def describe(self) -> str:
        """`memory: cgroup v1, processes: cgroup v1, tracking: cgroup v2, ...`."""
        return (
            f"memory: {self.memory}, processes: {self.processes}, tracking: {self.tracking}, "
            f"RLIMIT_NPROC {self.process_limit}, uid {self.uid}"
        )

    def not_enforced(self) -> str | None:
        """One line on what this run's limits did not hold, None when they all held."""
        gaps = []
        if self.memory == "watchdog":
            gaps.append(
                f"memory is sampled every {SAMPLE_S * 1000:.0f} ms, so a burst between two "
                "samples can pass memory_mb"
            )
        if self.processes == "watchdog":
            gaps.append("processes are counted by sampling, not refused at fork")
        if self.tracking == "process tree" and self.uid is None:
            gaps.append("a process that leaves the run's tree and session is not found")
        return "; ".join(gaps) or None
