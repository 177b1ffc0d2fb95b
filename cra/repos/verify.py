"""`cra repo verify`: a verdict per check on a repo package.

Checks, in order: the layout (only `repo/`, `packages/`, `manifest.json`, `manifest.sig`; no
symlinks or
special files anywhere), the manifest (schema and its own checksum), every wheel (present,
size, sha256, and nothing in `packages/` the manifest does not list), and the clone: a
plain repository only (every entry of `repo/.git/` on an allowlist: no `commondir`,
`gitdir`, worktrees, `info/attributes`, alternates, hooks or anything unknown; a config
with a few core settings and nothing else, includes refused), then `git fsck` and the
head the manifest names. The clone's layout and config are read before git runs in it.
Where the caller says which keys it trusts, last: the manifest's signature
(`manifest.sig`, see `cra.repos.signing`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cra.errors import CraError
from cra.fsutil import atomic_write_text, now_iso, sha256_file
from cra.git import GitError, git, git_bytes
from cra.repos.layout import RepoPackage
from cra.repos.manifest import Manifest, ManifestError, load_manifest
from cra.repos.signing import SIGNATURE_NAME, UNSIGNED_HINT, Trust, check_signature

TOP_LEVEL = {"repo": "dir", "packages": "dir", "manifest.json": "file", SIGNATURE_NAME: "file"}
SAFE_CONFIG = {
    "core.repositoryformatversion",
    "core.filemode",
    "core.bare",
    "core.logallrefupdates",
    "core.ignorecase",
    "core.precomposeunicode",
    "core.symlinks",
    "extensions.objectformat",
}


class PackageInvalid(CraError, ValueError):
    """A repo package failed verification; names the first failing check and file."""

    def __init__(self, root: Path, check: Check) -> None:
        super().__init__(
            f"{root.name}: {check.name} check failed: {check.detail}",
            hint=UNSIGNED_HINT
            if check.name == "signature"
            else "the package was changed or damaged; re-import a good copy or re-pack it",
        )
        self.root = root
        self.check = check


@dataclass(frozen=True)
class Check:
    """One verdict: the check's name, whether it passed, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """Every verdict on one package."""

    root: Path
    checks: tuple[Check, ...]
    manifest: Manifest | None

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    def raise_for_failure(self) -> None:
        """Raise PackageInvalid for the first failed check, if any."""
        for check in self.checks:
            if not check.ok:
                raise PackageInvalid(self.root, check)


def _walk_problems(root: Path) -> list[str]:
    """Symlinks, special files and unexpected top-level entries under `root`."""
    problems: list[str] = []
    for name in sorted(os.listdir(root)):
        kind = TOP_LEVEL.get(name)
        path = root / name
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            problems.append(f"{name} is a symlink")
        elif kind is None:
            problems.append(f"{name} is not part of a package")
        elif (kind == "dir") != stat.S_ISDIR(mode):
            problems.append(f"{name} must be a {'folder' if kind == 'dir' else 'file'}")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / entry
            mode = path.lstat().st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                problems.append(f"{rel} is a symlink (to {os.readlink(path)})")
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                problems.append(f"{rel} is not a regular file")
    return problems


def _check_wheels(package: RepoPackage, manifest: Manifest) -> Check:
    problems: list[str] = []
    listed = {w.file for w in manifest.wheels}
    present = set(os.listdir(package.packages_dir)) if package.packages_dir.is_dir() else set()
    for extra in sorted(present - listed):
        problems.append(f"packages/{extra} is not in the manifest")
    for wheel in manifest.wheels:
        path = package.packages_dir / wheel.file
        if wheel.file not in present:
            problems.append(f"packages/{wheel.file} is missing")
            continue
        size = path.stat().st_size
        if size != wheel.size:
            problems.append(f"packages/{wheel.file}: size {size} != recorded {wheel.size}")
            continue
        actual = sha256_file(path)
        if actual != wheel.sha256:
            problems.append(
                f"packages/{wheel.file}: sha256 {actual[:12]}… != recorded {wheel.sha256[:12]}…"
            )
    if problems:
        return Check("wheels", False, "; ".join(problems))
    return Check("wheels", True, f"{len(manifest.wheels)} wheels match their sha256")


_HEX = r"[0-9a-f]{40}(?:[0-9a-f]{24})?"
_REFS = r"(?:heads|tags|remotes)"
GIT_FILES = re.compile(
    "|".join(
        (
            r"HEAD|config|description|packed-refs|shallow|info/(?:exclude|refs)",
            r"hooks/[^/]+\.sample",
            r"objects/[0-9a-f]{2}/[0-9a-f]{38}(?:[0-9a-f]{24})?",
            rf"objects/pack/pack-{_HEX}\.(?:pack|idx|rev|bitmap|keep)",
            r"objects/pack/multi-pack-index",
            r"objects/info/(?:packs|commit-graph)",
            rf"objects/info/commit-graphs/(?:commit-graph-chain|graph-{_HEX}\.graph)",
            rf"refs/{_REFS}/.+|logs/HEAD|logs/refs/{_REFS}/.+",
        )
    )
)
"""Every file a plain repository of a package may hold in `repo/.git/`."""
GIT_DIRS = re.compile(
    rf"branches|hooks|info|objects|objects/[0-9a-f]{{2}}|objects/(?:pack|info)"
    rf"|objects/info/commit-graphs|refs|refs/{_REFS}(?:/.+)?|logs|logs/refs"
    rf"|logs/refs/{_REFS}(?:/.+)?"
)
"""Every folder it may hold."""
REFUSED = {
    "commondir": "would make git read another folder's config, hooks and attributes",
    "gitdir": "would point git at another repository",
    "worktrees": "holds linked worktrees, each with its own git folder",
    "modules": "holds submodule repositories",
    "config.worktree": "is configuration a package must not carry",
    "info/attributes": "sets attributes that select filters and diff drivers",
    "info/grafts": "rewrites the history git shows",
    "info/sparse-checkout": "changes what a checkout writes",
    "objects/info/alternates": "points outside the package",
    "objects/info/http-alternates": "points outside the package",
    "index": "is a checkout's index, which a package has none of",
    "refs/replace": "replaces objects in the history git shows",
}
"""Entries a package is likely to be tampered with, and why each is refused."""
CONFIG_VALUES = {
    "core.repositoryformatversion": {"0", "1"},
    "extensions.objectformat": {"sha1", "sha256"},
    "core.logallrefupdates": {"true", "false", "always", "yes", "no", "on", "off", "1", "0"},
}
BOOLEAN = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _git_dir_problems(gitdir: Path) -> list[str]:
    """Every entry of `gitdir` that is not part of a plain repository, with why."""
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(gitdir, followlinks=False):
        for entry in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / entry
            rel = path.relative_to(gitdir).as_posix()
            is_dir = path.is_dir() and not path.is_symlink()
            if (GIT_DIRS if is_dir else GIT_FILES).fullmatch(rel):
                continue
            if rel in REFUSED:
                problems.append(f"repo/.git/{rel} {REFUSED[rel]}")
            elif rel.startswith("hooks/"):
                problems.append(f"repo/.git/{rel} would run code")
            else:
                kind = "folder" if is_dir else "file"
                problems.append(
                    f"repo/.git/{rel}: no {kind} of that name is part of a plain repository"
                )
            if is_dir:
                dirnames.remove(entry)
    return problems


def _config_problems(repo_dir: Path) -> list[str]:
    """Every setting of `repo/.git/config` outside the few core ones a plain repository
    has (includes are listed as settings, never followed)."""
    config = repo_dir / ".git" / "config"
    if not config.is_file():
        return ["repo/.git/config is missing"]
    try:
        # --git-dir names no repository: git reads this one file and nothing else.
        read_config = ("config", "--file", str(config), "--no-includes", "--null", "--list")
        listing = git_bytes(f"--git-dir={os.devnull}", *read_config, cwd=repo_dir)
    except GitError as exc:
        return [f"repo/.git/config is unreadable: {exc}"]
    problems: list[str] = []
    for item in listing.decode("utf-8", "replace").split("\0"):
        if not item:
            continue
        key, _, value = item.partition("\n")
        key = key.lower()
        allowed = CONFIG_VALUES.get(key, BOOLEAN if key in SAFE_CONFIG else None)
        if allowed is None:
            problems.append(f"repo/.git/config sets {key}, which a package must not")
        elif value.lower() not in allowed:
            problems.append(f"repo/.git/config sets {key} to {value!r}, which a package must not")
    return problems


def _check_git_safety(repo_dir: Path) -> list[str]:
    """Why the clone is not a plain repository that runs nothing (empty when it is)."""
    gitdir = repo_dir / ".git"
    if gitdir.is_file():
        return ["repo/.git is a file (a link to a git folder elsewhere), not a repository"]
    if not gitdir.is_dir():
        return ["repo/.git is missing"]
    problems = [
        f"repo/{entry}: the clone must have no checked-out files"
        for entry in sorted(os.listdir(repo_dir))
        if entry != ".git"
    ]
    problems += _git_dir_problems(gitdir)
    return problems + _config_problems(repo_dir)


def _check_git(package: RepoPackage, manifest: Manifest | None) -> Check:
    problems = _check_git_safety(package.repo_dir)
    if problems:
        return Check("git", False, "; ".join(problems))
    try:
        git("fsck", "--no-progress", "--full", "--no-dangling", cwd=package.repo_dir)
    except GitError as exc:
        return Check("git", False, f"git fsck of repo/: {exc}")
    try:
        head = git("rev-parse", "--verify", "HEAD^{commit}", cwd=package.repo_dir).strip()
    except GitError:
        return Check("git", False, "repo/ has no HEAD commit")
    if manifest is not None and head != manifest.head:
        return Check(
            "git", False, f"repo/ HEAD is {head[:12]}, the manifest says {manifest.head[:12]}"
        )
    count = git("rev-list", "--count", "HEAD", cwd=package.repo_dir).strip()
    return Check("git", True, f"git fsck clean, {count} commits, HEAD {head[:12]}")


def verify_package(root: Path, trust: Trust | None = None) -> VerifyReport:
    """Run every check on the package at `root` and return the verdicts (never raises
    for a bad package; see VerifyReport.raise_for_failure). With `trust`, the manifest's
    signature is checked too (see `cra.repos.signing`)."""
    package = RepoPackage(Path(root))
    checks: list[Check] = []
    problems = _walk_problems(package.root)
    checks.append(
        Check("layout", not problems, "; ".join(problems) or "repo/, packages/, manifest.json")
    )
    manifest: Manifest | None = None
    try:
        manifest = load_manifest(package.manifest_path)
        checks.append(Check("manifest", True, f"schema and checksum valid ({manifest.name})"))
    except ManifestError as exc:
        checks.append(Check("manifest", False, str(exc).replace(str(package.root) + "/", "")))
    if problems and any("symlink" in p or "regular" in p for p in problems):
        checks.append(Check("wheels", False, "skipped: the layout is unsafe"))
        checks.append(Check("git", False, "skipped: the layout is unsafe"))
        return VerifyReport(package.root, tuple(checks), manifest)
    if manifest is None:
        checks.append(Check("wheels", False, "skipped: no valid manifest to check against"))
    else:
        checks.append(_check_wheels(package, manifest))
        checks.append(_eras(manifest))
        if trust is not None:
            checks.append(_signature(package, trust))
    checks.append(_check_git(package, manifest))
    return VerifyReport(package.root, tuple(checks), manifest)


def _signature(package: RepoPackage, trust: Trust) -> Check:
    """Whether the manifest is signed by a trusted key (or, allowed, it is not)."""
    data = json.loads(package.manifest_path.read_text(encoding="utf-8"))
    check = check_signature(package.root, data, trust.keys)
    if check.ok or not trust.accepts(check):
        return Check("signature", check.ok, check.detail)
    return Check("signature", True, f"{check.detail}: accepted (--allow-unsigned)")


def _eras(manifest: Manifest) -> Check:
    """Which eras have an environment (an unusable era is reported, not a failure)."""
    usable = [e.id for e in manifest.environments if e.usable]
    unusable = [f"{e.id} ({e.unusable})" for e in manifest.environments if not e.usable]
    detail = f"{len(usable)} usable: {', '.join(usable)}"
    if unusable:
        detail += f"; {len(unusable)} unusable: {'; '.join(unusable)}"
    return Check("eras", bool(usable), detail)


def _stamp_path(stamps_dir: Path, name: str) -> Path:
    return stamps_dir / f"{name}.json"


def fingerprint(root: Path) -> str:
    """A cheap digest of the package's file names, sizes and mtimes (no content read)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def stamp_verified(stamps_dir: Path, package: RepoPackage) -> None:
    """Record in `stamps_dir` (the workspace's `verified_dir`) that `package` passed
    verification as it is now."""
    data = {
        "manifest_sha256": sha256_file(package.manifest_path),
        "fingerprint": fingerprint(package.root),
        "verified_at": now_iso(),
    }
    atomic_write_text(_stamp_path(stamps_dir, package.name), json.dumps(data, indent=2) + "\n")


def clear_stamp(stamps_dir: Path, name: str) -> None:
    """Forget a past verification of package `name`."""
    _stamp_path(stamps_dir, name).unlink(missing_ok=True)


def verified_state(stamps_dir: Path, package: RepoPackage) -> str:
    """ "verified", "changed since verified" or "not verified" (cheap: no wheel is read)."""
    path = _stamp_path(stamps_dir, package.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "not verified"
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint(package.root):
        return "changed since verified"
    return "verified"
