"""Run untrusted repository tests in a sandbox: no network, a private writable copy of the
tree, a private temp dir and HOME, everything else read-only, resource limits, and the
whole process tree killed on timeout.

Isolation, best first:
- `bwrap` (bubblewrap): new network, PID, IPC and UTS namespaces; a root made of
  read-only binds of the system (`/usr`, `/etc`) and of the paths the run needs (the
  environment, the interpreter); the run's own folders bound writable.
- `unshare`: new network, PID and mount namespaces on the host's file system.
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
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cra.errors import CraError

ISOLATIONS = ("bwrap", "unshare", "none")
SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
TAIL_CHARS = 4000
SANDBOX_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox, not the host's


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
    out = [
        "bwrap",
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


def unshare_argv(argv: Sequence[str], *, uid: int | None) -> list[str]:
    """The `unshare` command line: new network, PID and mount namespaces."""
    base = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    if uid is None:
        base.insert(1, "--user")
        base.insert(2, "--map-root-user")
    return [*base, "--", *_drop(uid), *argv]


_PROBED: dict[str, str | None] = {}


def probe(isolation: str, uid: int | None) -> str | None:
    """None when `isolation` works on this machine, else why it does not (cached)."""
    key = f"{isolation}:{uid}"
    if key in _PROBED:
        return _PROBED[key]
    tool = {"bwrap": "bwrap", "unshare": "unshare"}.get(isolation)
    why: str | None = None
    if tool is not None and shutil.which(tool) is None:
        why = f"{tool} is not installed"
    elif isolation == "bwrap":
        cmd = bwrap_argv(["true"], cwd=Path("/"), writable=(), readonly=(), uid=uid)
    elif isolation == "unshare":
        cmd = unshare_argv(["true"], uid=uid)
    if why is None and isolation != "none":
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode != 0:
                why = f"{tool} cannot run here: {proc.stderr.strip()[-300:] or proc.returncode}"
        except (OSError, subprocess.TimeoutExpired, SandboxUnavailable) as exc:
            why = f"{tool} cannot run here: {exc}"
    _PROBED[key] = why
    return why


def choose_isolation(*, allow_unsafe: bool, uid: int | None, prefer: str | None = None) -> str:
    """The best isolation that works here: bwrap, else unshare; `none` only if allowed."""
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
    raise SandboxUnavailable(
        "no sandbox is available: " + "; ".join(reasons),
        hint="install bubblewrap (apt-get install bubblewrap), or pass --unsafe-no-sandbox "
        "to run repository tests unisolated",
    )


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


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_CHARS))
            return fh.read().decode("utf-8", "replace")
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
) -> SandboxResult:
    """Run `argv` in `cwd` under `isolation` and `limits`; kill everything at the timeout.

    `writable` are the only paths the run may change (its tree copy, temp dir, HOME,
    report folder); `readonly` are made visible read-only (environment, interpreter).
    Output goes to `logs/stdout` and `logs/stderr`.
    """
    if isolation == "bwrap":
        cmd = bwrap_argv(argv, cwd=cwd, writable=writable, readonly=readonly, uid=uid)
    elif isolation == "unshare":
        cmd = unshare_argv(argv, uid=uid)
        if uid is not None:
            # On the host's file system the unprivileged uid must be able to reach them.
            for path in (*writable, *readonly):
                blocked = unreachable_parent(Path(path))
                if blocked is not None:
                    return SandboxResult(
                        isolation, None, False, 0.0, "", "",
                        start_error=f"unshare: {path} cannot be reached by uid {uid}: "
                        f"{blocked} is private (use bubblewrap, or a workspace in a folder "
                        "others may traverse)",
                    )  # fmt: skip
    elif isolation == "none":
        cmd = list(argv)
    else:
        raise ValueError(f"unknown isolation {isolation!r}")
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
    with out_path.open("wb") as out, err_path.open("wb") as err:
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
    return SandboxResult(
        isolation,
        proc.returncode,
        timed_out,
        time.perf_counter() - started,
        _tail(out_path),
        _tail(err_path),
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
