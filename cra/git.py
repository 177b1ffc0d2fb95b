"""Running git on repositories cra does not trust: one argv and environment builder, clear
errors, and nothing of any configuration that could run a command.

A repository package comes from another machine, and even the source repository at
pack time is only as trustworthy as whoever set it up. Git runs commands named by
configuration (hooks, `core.fsmonitor`, external diff and textconv drivers, filters,
pagers, signature programs) and reads configuration from places a package can point at
(`commondir`, `include.path`). Every git call cra makes goes through :func:`git_argv`
and :func:`git_env`:

- system and global configuration are ignored, and so are system attributes;
- command-line `-c` settings, which win over every configuration file, turn off
  fsmonitor, hooks, the attributes file, the pager, signature display, automatic
  maintenance and the `ext::` transport;
- diff-family commands get `--no-ext-diff --no-textconv` (git 2.39 has no setting that
  disables every `diff.<driver>.command`/`textconv`; these options do);
- inherited `GIT_*` variables that point git elsewhere are dropped, replacement objects
  are ignored and no optional lock is taken;
- in a repository whose `.git` is a folder, `GIT_DIR` and `GIT_COMMON_DIR` name that
  folder, so a `commondir` file cannot send git to another repository's config.

Trees are exported with :func:`archive_tree`, from blobs as stored: `git archive` applies
in-tree and `info/attributes` (smudge filters, `export-ignore`, `export-subst`), and git
2.39 cannot make it ignore them. No `-c` setting disables every `filter.<driver>`: cra never
checks out or diffs a worktree of a package (the one checkout it makes is of a fresh
repository holding cra's own config), and verify refuses a package config that defines
one.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from cra.errors import CraError

HARDENED_CONFIG = (
    "core.fsmonitor=false",
    f"core.hooksPath={os.devnull}",
    f"core.attributesFile={os.devnull}",
    "core.pager=cat",
    "core.untrackedCache=false",
    "log.showSignature=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "fetch.recurseSubmodules=false",
    "submodule.recurse=false",
    "protocol.ext.allow=never",
)
"""`-c` settings on every git call: command-line settings win over every file."""

DIFF_COMMANDS = frozenset({"diff", "diff-tree", "diff-index", "diff-files", "log", "show"})
"""Subcommands that could run an external diff or a textconv driver."""

NO_DIFF_DRIVERS = ("--no-ext-diff", "--no-textconv")

KEPT_GIT_VARIABLES = frozenset(
    {
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSH_VARIANT",
        "GIT_ASKPASS",
        "GIT_EXEC_PATH",
        "GIT_HTTP_USER_AGENT",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
    }
)
"""Inherited `GIT_*` variables that name only the user's own transport or identity; every
other one (`GIT_DIR`, `GIT_CONFIG_*`, `GIT_EXTERNAL_DIFF`, `GIT_INDEX_FILE`, ...) is
dropped. Tracing and TLS variables (`GIT_TRACE*`, `GIT_SSL_*`, `GIT_CURL_*`) are kept."""

_KEPT_PREFIXES = ("GIT_TRACE", "GIT_SSL_", "GIT_CURL_", "GIT_HTTP_")

_NO_PIN = frozenset({"init", "clone"})
"""Subcommands that create a repository: never pinned to the one in their `cwd`."""


class GitError(CraError, RuntimeError):
    """A git command failed."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {returncode}"
        super().__init__(f"git {' '.join(args[:3])} failed: {detail}")
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr


def git_argv(*args: str) -> list[str]:
    """The full argv for `git ARGS` with every configured command turned off (see the
    module docstring); `args[0]` is the subcommand."""
    argv = ["git", "--no-pager", "--no-replace-objects"]
    for setting in HARDENED_CONFIG:
        argv += ["-c", setting]
    if args and args[0] in DIFF_COMMANDS:
        return [*argv, args[0], *NO_DIFF_DRIVERS, *args[1:]]
    return [*argv, *args]


def git_env(cwd: Path | None = None, subcommand: str | None = None) -> dict[str, str]:
    """The environment git runs in: no system or global config or attributes, no
    inherited redirection, no prompts, C locale. With `cwd` holding a `.git` folder (and
    a subcommand that does not create a repository), git is pinned to that folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIT_") or k in KEPT_GIT_VARIABLES or k.startswith(_KEPT_PREFIXES)
    }
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ATTR_NOSYSTEM="1",
        GIT_NO_REPLACE_OBJECTS="1",
        GIT_OPTIONAL_LOCKS="0",
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        PAGER="cat",
        LC_ALL="C",
    )
    if cwd is not None and subcommand not in _NO_PIN:
        gitdir = Path(cwd) / ".git"
        if gitdir.is_dir() and not gitdir.is_symlink():
            env["GIT_DIR"] = env["GIT_COMMON_DIR"] = str(gitdir.absolute())
    return env


def run_git(
    *args: str, cwd: Path, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `git ARGS` hardened in `cwd` and return the finished process (not checked)."""
    if shutil.which("git") is None:
        raise CraError("git is not installed", hint="install git and try again")
    return subprocess.run(
        git_argv(*args),
        cwd=cwd,
        input=input,
        capture_output=True,
        env=git_env(cwd, args[0] if args else None),
        check=False,
    )


def git_bytes(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    """Run `git ARGS` in `cwd` and return its raw stdout; raise GitError on failure."""
    proc = run_git(*args, cwd=cwd, input=input)
    if proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def git(*args: str, cwd: Path, input: str | None = None) -> str:
    """Run `git ARGS` in `cwd` and return stdout as text (invalid UTF-8 replaced)."""
    out = git_bytes(*args, cwd=cwd, input=None if input is None else input.encode())
    return out.decode("utf-8", "replace")


def cat_blobs(repo_dir: Path, shas: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """Each object of `shas` as stored, through one `git cat-file --batch`: sha to
    (type, raw content). No filter, textconv or attribute applies; missing ones are left
    out."""
    if not shas:
        return {}
    request = "".join(f"{s}\n" for s in shas).encode()
    data = git_bytes("cat-file", "--batch", cwd=repo_dir, input=request)
    objects: dict[str, tuple[str, bytes]] = {}
    pos = 0
    for sha in shas:
        end = data.index(b"\n", pos)
        header = data[pos:end].split(b" ")
        pos = end + 1
        if len(header) < 3:
            continue  # "<sha> missing"
        size = int(header[2])
        objects[sha] = (header[1].decode(), data[pos : pos + size])
        pos += size + 1
    return objects


def _commit_time(raw: bytes) -> int:
    """The committer timestamp of a raw commit object (0 if it has none)."""
    for line in raw.split(b"\n"):
        if not line:
            break
        if line.startswith(b"committer "):
            try:
                return int(line.rsplit(b" ", 2)[1])
            except (IndexError, ValueError):
                return 0
    return 0


def _selected(path: str, paths: Sequence[str]) -> bool:
    return not paths or any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)


def archive_tree(repo_dir: Path, sha: str, paths: Sequence[str] = ()) -> bytes:
    """A tar of the tree of commit `sha` (or of `paths` in it: files, or folders and
    what is under them), the blobs exactly as stored: what `git archive` writes for a
    tree without attributes. Symlinks stay symlinks, submodules are empty folders, every
    entry carries the commit time. Raise GitError for a path the tree does not hold."""
    listing = git_bytes("ls-tree", "-r", "-z", "--full-tree", sha, cwd=repo_dir)
    entries: list[tuple[str, str, str]] = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, raw_path = item.partition(b"\t")
        mode, _kind, obj = meta.decode().split(" ")
        path = raw_path.decode("utf-8", "surrogateescape")
        if _selected(path, paths):
            entries.append((mode, obj, path))
    for wanted in paths:
        if not any(_selected(path, [wanted]) for _m, _o, path in entries):
            raise GitError(["archive", sha, wanted], 128, f"pathspec '{wanted}' did not match")
    blobs = [obj for mode, obj, _p in entries if mode != "160000"]
    objects = cat_blobs(repo_dir, [sha, *dict.fromkeys(blobs)])
    kind, raw = objects.get(sha, ("", b""))
    mtime = _commit_time(raw) if kind == "commit" else 0
    return _tar(entries, objects, mtime)


def _tar(
    entries: list[tuple[str, str, str]], objects: dict[str, tuple[str, bytes]], mtime: int
) -> bytes:
    out = io.BytesIO()
    made: set[str] = set()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape"
    ) as tar:

        def folder(name: str) -> None:
            parts = name.split("/")
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in made:
                    made.add(sub)
                    tar.addfile(_info(sub, tarfile.DIRTYPE, 0o755, mtime))

        for mode, obj, path in entries:
            if "/" in path:
                folder(path.rsplit("/", 1)[0])
            if mode == "160000":
                folder(path)
                continue
            data = objects.get(obj, ("", b""))[1]
            if mode == "120000":
                info = _info(path, tarfile.SYMTYPE, 0o777, mtime)
                info.linkname = data.decode("utf-8", "surrogateescape")
                tar.addfile(info)
                continue
            info = _info(path, tarfile.REGTYPE, 0o755 if mode == "100755" else 0o644, mtime)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    return info
