"""`cra repo export`: verified repo packages onto a folder (a USB stick) or into one tar.

Every package is verified (`cra.repos.verify`) before anything is written; one that fails
stops the export with nothing written. Into a folder, each package is copied to
`DIR/.NAME.export-*` and renamed to `DIR/NAME` once whole, and `DIR/cra-index.json` is
rewritten after each one lands; into a tar, the archive is written under a temporary name
in its folder and renamed when complete, `cra-index.json` its first member. The index
lists each package with the sha256 of its `manifest.json`, so `cra repo import` can tell
that a package is the one exported. An existing `DIR/NAME` or tar is refused unless
`replace`. Ctrl-C or a failure leaves only what had landed whole.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cra import __version__
from cra.errors import CraError, UsageError
from cra.fsutil import atomic_write_text, now_iso, sha256_file
from cra.repos.layout import NAME_RE, RepoPackage, require_package
from cra.repos.manifest import Manifest
from cra.repos.verify import PackageInvalid, clear_stamp, stamp_verified, verify_package
from cra.workspace import Workspace

Echo = Callable[[str], None]
INDEX_NAME = "cra-index.json"
INDEX_FORMAT = "cra-export"
INDEX_VERSION = 1
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
# A tar header and the padding of its last block, per member, counted for free space.
TAR_OVERHEAD = 1024


@dataclass(frozen=True)
class IndexEntry:
    """One package of an export: its name, the sha256 of its manifest.json, its head."""

    name: str
    manifest_sha256: str
    head: str
    wheels: int
    bytes: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class ExportResult:
    """Where the export went (`DIR` or the tar file) and what it holds now."""

    kind: str
    """`folder` or `tar`."""
    dest: Path
    exported: tuple[IndexEntry, ...]
    index: tuple[IndexEntry, ...]
    """Every package the destination's index lists (a folder may hold earlier ones)."""
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return {
            "kind": self.kind,
            "dest": str(self.dest),
            "exported": [e.to_dict() for e in self.exported],
            "index": [e.to_dict() for e in self.index],
            "seconds": round(self.seconds, 3),
        }


def index_text(entries: Iterable[IndexEntry]) -> str:
    """The content of `cra-index.json` for `entries`."""
    data = {
        "format": INDEX_FORMAT,
        "format_version": INDEX_VERSION,
        "created_at": now_iso(),
        "cra_version": __version__,
        "packages": [e.to_dict() for e in sorted(entries, key=lambda e: e.name)],
    }
    return json.dumps(data, indent=2) + "\n"


def parse_index(text: str | bytes, where: str) -> dict[str, IndexEntry]:
    """The packages an index lists, by name; raise UsageError naming what is wrong."""

    def bad(why: str) -> UsageError:
        return UsageError(
            f"{where}: {why}",
            hint=f"{INDEX_NAME} is written by `cra repo export`; export again",
        )

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise bad(f"not a {INDEX_FORMAT} index")
    if data.get("format_version") != INDEX_VERSION:
        raise bad(f"format_version {data.get('format_version')!r} is not {INDEX_VERSION}")
    packages = data.get("packages")
    if not isinstance(packages, list):
        raise bad("'packages' must be a list")
    out: dict[str, IndexEntry] = {}
    for i, item in enumerate(packages):
        if not isinstance(item, dict):
            raise bad(f"packages[{i}] must be an object")
        try:
            entry = IndexEntry(
                name=item["name"],
                manifest_sha256=item["manifest_sha256"],
                head=item["head"],
                wheels=item["wheels"],
                bytes=item["bytes"],
            )
        except KeyError as exc:
            raise bad(f"packages[{i}] has no {exc.args[0]!r}") from None
        if not isinstance(entry.name, str) or not isinstance(entry.manifest_sha256, str):
            raise bad(f"packages[{i}]: 'name' and 'manifest_sha256' must be strings")
        if not NAME_RE.match(entry.name):
            raise bad(f"packages[{i}]: {entry.name!r} is not a package name")
        if not SHA_RE.match(entry.manifest_sha256):
            raise bad(f"packages[{i}] ({entry.name}): manifest_sha256 is not a sha256")
        if entry.name in out:
            raise bad(f"package {entry.name!r} is listed twice")
        out[entry.name] = entry
    return out


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes, files) under `root`, links not followed."""
    size = files = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            size += (Path(dirpath) / name).lstat().st_size
            files += 1
    return size, files


def _entry(package: RepoPackage, manifest: Manifest) -> IndexEntry:
    return IndexEntry(
        name=package.name,
        manifest_sha256=sha256_file(package.manifest_path),
        head=manifest.head,
        wheels=len(manifest.wheels),
        bytes=tree_size(package.root)[0],
    )


def all_package_names(repos_dir: Path) -> list[str]:
    """The name of every package in the workspace's `repos_dir` (temporary folders
    excluded)."""
    if not repos_dir.is_dir():
        return []
    return sorted(p.name for p in repos_dir.iterdir() if not p.name.startswith(".") and p.is_dir())


def _verified(workspace: Workspace, names: list[str], say: Echo) -> list[IndexEntry]:
    """Verify every package; raise for the first that fails, before anything is written."""
    entries: list[IndexEntry] = []
    for name in names:
        package = require_package(workspace.repos_dir, name)
        say(f"verifying {name}")
        report = verify_package(package.root)
        try:
            report.raise_for_failure()
        except PackageInvalid as exc:
            clear_stamp(workspace.verified_dir, name)
            raise CraError(f"{exc.message}; nothing was exported", hint=exc.hint) from None
        if report.manifest is None:  # verify passed, so this cannot be; stay loud if it is
            raise CraError(f"{name}: verified package has no manifest")
        stamp_verified(workspace.verified_dir, package)
        entries.append(_entry(package, report.manifest))
    return entries


def _need_space(where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if needed > free:
        raise CraError(
            f"the export needs {needed / 1e6:.1f} MB, {where} has {free / 1e6:.1f} MB free; "
            "nothing was exported",
            hint="free some space, use a larger stick, or export fewer packages",
        )


def _copy_tree(source: Path, dest: Path) -> None:
    """Copy the regular files and folders of `source` into the existing folder `dest`."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        rel_dir = Path(dirpath).relative_to(source)
        for entry in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / entry
            mode = path.lstat().st_mode
            target = dest / rel_dir / entry
            if stat.S_ISDIR(mode):
                target.mkdir()
            elif stat.S_ISREG(mode):
                shutil.copyfile(path, target, follow_symlinks=False)
            else:  # verified a moment ago; changed since
                raise CraError(f"{path}: not a regular file or folder; the package changed")


def _read_folder_index(dest: Path) -> dict[str, IndexEntry]:
    path = dest / INDEX_NAME
    if not path.exists():
        return {}
    index = parse_index(path.read_bytes(), str(path))
    return {name: e for name, e in index.items() if (dest / name / "manifest.json").is_file()}


def _export_folder(
    workspace: Workspace, entries: list[IndexEntry], dest: Path, replace: bool, say: Echo
) -> tuple[IndexEntry, ...]:
    dest.mkdir(parents=True, exist_ok=True)
    index = _read_folder_index(dest)
    clashes = [e.name for e in entries if os.path.lexists(dest / e.name)]
    if clashes and not replace:
        raise UsageError(
            f"{dest} already holds {', '.join(clashes)}; nothing was exported",
            hint="pass --replace to overwrite them, or export to another folder",
        )
    replaced = sum(tree_size(dest / n)[0] for n in clashes if (dest / n).is_dir())
    _need_space(dest, max(0, sum(e.bytes for e in entries) - replaced))
    for entry in entries:
        say(f"copying {entry.name} ({entry.bytes / 1e6:.1f} MB) to {dest / entry.name}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.export-", dir=dest))
        try:
            staged = tmp / entry.name
            staged.mkdir()
            _copy_tree(workspace.repos_dir / entry.name, staged)
            final = dest / entry.name
            if os.path.lexists(final):
                final.rename(tmp / "replaced")
            staged.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        index[entry.name] = entry
        atomic_write_text(dest / INDEX_NAME, index_text(index.values()))
        (dest / INDEX_NAME).chmod(0o644)
    return tuple(sorted(index.values(), key=lambda e: e.name))


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    if not (info.isfile() or info.isdir()):  # verified a moment ago; changed since
        raise CraError(f"{info.name}: not a regular file or folder; the package changed")
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _export_tar(
    workspace: Workspace, entries: list[IndexEntry], target: Path, replace: bool, say: Echo
) -> tuple[IndexEntry, ...]:
    if target.exists() and not replace:
        raise UsageError(
            f"{target} already exists; nothing was exported",
            hint="pass --replace to overwrite it, or give another --to",
        )
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} is not a folder", hint="give --to an existing folder")
    files = sum(tree_size(workspace.repos_dir / e.name)[1] for e in entries)
    _need_space(target.parent, sum(e.bytes for e in entries) + TAR_OVERHEAD * (files + 2))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w") as archive:
            data = index_text(entries).encode("utf-8")
            info = tarfile.TarInfo(INDEX_NAME)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(data))
            for entry in entries:
                say(f"adding {entry.name} ({entry.bytes / 1e6:.1f} MB) to {target}")
                archive.add(
                    workspace.repos_dir / entry.name, arcname=entry.name, filter=_tar_filter
                )
            archive.close()
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)  # mkstemp makes it private; the stick is for another machine
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tuple(entries)


def tar_target(to: Path, *, now: datetime | None = None) -> Path:
    """The tar file `--to` names: itself when it ends in `.tar` and is no folder, else
    `TO/corpus-YYYYmmdd-HHMMSS.tar` (UTC)."""
    if to.suffix == ".tar" and not to.is_dir():
        return to
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return to / f"corpus-{stamp}.tar"


def export_packages(
    workspace: Workspace,
    names: Iterable[str],
    to: Path,
    *,
    tar: bool = False,
    replace: bool = False,
    echo: Echo | None = None,
) -> ExportResult:
    """Verify the packages `names` and write them to the folder `to` (`DIR/NAME/` each, and
    `DIR/cra-index.json`), or with `tar` (or `to` ending in `.tar`) into one tar file.

    Raises before writing anything when a package is missing or fails verification, when
    a destination exists and not `replace`, or when there is not enough free space.
    """
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise UsageError("no package to export", hint="name packages, or pass --all")
    to = Path(to).expanduser().absolute()
    tar = tar or (to.suffix == ".tar" and not to.is_dir())
    if not tar and to.exists() and not to.is_dir():
        raise UsageError(f"--to {to} is a file, not a folder", hint="give a folder, or a .tar")
    entries = _verified(workspace, wanted, say)
    if tar:
        if to.suffix != ".tar" or to.is_dir():
            to.mkdir(parents=True, exist_ok=True)
        dest = tar_target(to)
        index = _export_tar(workspace, entries, dest, replace, say)
    else:
        dest = to
        index = _export_folder(workspace, entries, dest, replace, say)
    os.sync()  # so a USB stick can be pulled once the command returns
    return ExportResult(
        "tar" if tar else "folder", dest, tuple(entries), index, time.perf_counter() - started
    )
