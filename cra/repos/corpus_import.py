"""`cra repo import DIR`: every package of an export (a folder or a tar) in one call.

An export is what `cra repo export` writes: package folders `NAME/` and `cra-index.json`.
Each package goes through `cra.repos.importer.import_package`, so each is verified in a
temporary folder and lands whole or not at all; one that fails is recorded and the next
imported. A package the index lists must have the manifest the index names (its sha256).
A package already in the workspace is reported, never overwritten. From a tar, each
package's members are copied into a temporary single-package tar that the importer then
checks and extracts, so the tar is never unpacked by anything else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from cra.errors import CraError, UsageError
from cra.fsutil import sha256_file
from cra.git import GitError, git
from cra.repos.corpus import one_line
from cra.repos.export import INDEX_NAME, IndexEntry, parse_index
from cra.repos.importer import ImportResult, import_package
from cra.repos.layout import NAME_RE, package_path
from cra.repos.signing import Trust
from cra.workspace import Workspace

Echo = Callable[[str], None]
STATUSES = ("imported", "present", "failed")


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one package: `imported`, `present` (not overwritten) or `failed`."""

    name: str
    status: str
    commits: int | None = None
    environments: int | None = None
    wheels: int | None = None
    error: str | None = None
    hint: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class ExportSource:
    """An export found at `path`: its kind, its index and the packages it holds."""

    path: Path
    kind: str
    """`folder` or `tar`."""
    index: dict[str, IndexEntry]
    packages: tuple[str, ...]
    """Package names, index entries first, then unlisted package folders."""
    ignored: tuple[str, ...] = ()
    """Top-level entries that are neither a package nor the index."""
    members: dict[str, list[tarfile.TarInfo]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportReport:
    """Every package's outcome, in the export's order."""

    source: Path
    kind: str
    outcomes: tuple[ImportOutcome, ...]
    ignored: tuple[str, ...]
    seconds: float

    def count(self, status: str) -> int:
        """How many packages ended with `status`."""
        return sum(1 for o in self.outcomes if o.status == status)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return {
            "source": str(self.source),
            "kind": self.kind,
            "seconds": round(self.seconds, 3),
            **{status: self.count(status) for status in STATUSES},
            "packages": [o.to_dict() for o in self.outcomes],
            "ignored": list(self.ignored),
        }

    def raise_for_failure(self) -> None:
        """Raise CraError naming the packages that failed, if any."""
        failed = [o.name for o in self.outcomes if o.status == "failed"]
        if failed:
            raise CraError(
                f"{len(failed)} of {len(self.outcomes)} packages failed to import: "
                f"{', '.join(failed)}; the others landed",
                hint="nothing of a failed package remains; re-export it and import again",
            )


def _top(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))


def _folder_source(path: Path) -> ExportSource | None:
    if (path / "manifest.json").exists():
        return None
    index_path = path / INDEX_NAME
    index = parse_index(index_path.read_bytes(), str(index_path)) if index_path.is_file() else {}
    found: list[str] = []
    ignored: list[str] = []
    for entry in sorted(os.listdir(path)):
        if entry == INDEX_NAME or entry in index:
            continue
        full = path / entry
        if (
            not entry.startswith(".")
            and stat.S_ISDIR(full.lstat().st_mode)
            and (full / "manifest.json").exists()
        ):
            found.append(entry)
        else:
            ignored.append(entry)
    if not index and len(found) < 2:
        return None  # one package in a folder (or none): the single-package import
    return ExportSource(path, "folder", index, (*index, *found), tuple(ignored))


def _tar_source(path: Path) -> ExportSource | None:
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError):
        return None  # the single-package import says what is wrong with it
    with archive:
        members = archive.getmembers()
        index_member = next((m for m in members if _top(m.name) == (INDEX_NAME,)), None)
        index: dict[str, IndexEntry] = {}
        if index_member is not None:
            stream = archive.extractfile(index_member)
            if stream is None:
                raise UsageError(f"{path}: {INDEX_NAME} is not a regular file")
            with stream:
                index = parse_index(stream.read(), f"{path}: {INDEX_NAME}")
    groups: dict[str, list[tarfile.TarInfo]] = {}
    ignored: list[str] = []
    for member in members:
        parts = _top(member.name)
        if not parts or member is index_member:
            continue
        if PurePosixPath(member.name).is_absolute() or not NAME_RE.match(parts[0]):
            if member.name not in ignored:
                ignored.append(member.name)
            continue
        groups.setdefault(parts[0], []).append(member)
    with_manifest = [n for n, ms in groups.items() if any(_is_manifest(m) for m in ms)]
    if index_member is None and len(with_manifest) < 2:
        return None
    for name in sorted(set(groups) - set(index) - set(with_manifest)):
        ignored.append(f"{name}/")
        del groups[name]
    unlisted = sorted(set(groups) - set(index))
    return ExportSource(path, "tar", index, (*index, *unlisted), tuple(ignored), groups)


def open_export(path: Path) -> ExportSource | None:
    """The export at `path` (a folder or tar holding `cra-index.json`, or several package
    folders), or None when `path` is a single package for `import_package`."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        return _folder_source(path)
    if path.is_file():
        return _tar_source(path)
    return None


def _is_manifest(member: tarfile.TarInfo) -> bool:
    """Whether `member` is a package's top-level `manifest.json` (NAME/manifest.json)."""
    return _top(member.name)[1:] == ("manifest.json",)


def _sha256_of(stream: IO[bytes]) -> str:
    """The sha256 of what `stream` holds, read in chunks."""
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _tar_manifest_sha(archive: tarfile.TarFile, members: list[tarfile.TarInfo]) -> str | None:
    for member in members:
        if _is_manifest(member) and member.isfile():
            stream = archive.extractfile(member)
            if stream is None:
                return None
            with stream:
                return _sha256_of(stream)
    return None


def _single_tar(archive: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path) -> None:
    """Copy `members` as they are (links and all) into the tar `dest`, for the importer."""
    with tarfile.open(dest, "w") as out:
        for member in members:
            if member.isfile():
                stream = archive.extractfile(member)
                if stream is None:
                    raise UsageError(f"{member.name}: unreadable member")
                with stream:
                    out.addfile(member, stream)
            else:
                out.addfile(member)


def _commits(result: ImportResult) -> int | None:
    try:
        return int(git("rev-list", "--count", "HEAD", cwd=result.package.repo_dir).strip())
    except (GitError, ValueError):
        return None


def _mismatch(name: str, expected: str, actual: str | None) -> str:
    if actual is None:
        return f"{name}: the export has no manifest.json for it"
    return (
        f"{name}: manifest.json sha256 {actual[:12]}… is not the {expected[:12]}… "
        f"{INDEX_NAME} lists; not the exported package"
    )


def _present(repos_dir: Path, name: str, actual: str | None) -> ImportOutcome | None:
    """The `present` outcome when the workspace already has a package `name`, else None;
    it is never overwritten."""
    local = package_path(repos_dir, name) if NAME_RE.match(name) else None
    if local is None or not local.root.exists():
        return None
    same = local.manifest_path.is_file() and sha256_file(local.manifest_path) == actual
    note = (
        "the same package is already here"
        if same
        else "a different package of that name is already here; not overwritten"
    )
    return ImportOutcome(name, "present", note=note)


def _listing_error(
    export: ExportSource,
    name: str,
    is_tar: bool,
    members: list[tarfile.TarInfo],
    actual: str | None,
) -> tuple[str | None, str | None]:
    """Why the export's copy of `name` cannot be imported (error, hint), or (None, None)."""
    listed = export.index.get(name)
    if not is_tar and (export.path / name).is_symlink():
        return f"{name} is a symlink, not a package folder", None
    if (not is_tar and not (export.path / name).exists()) or (is_tar and not members):
        return f"{name}: listed in {INDEX_NAME} but not in the export", None
    if listed is not None and actual != listed.manifest_sha256:
        hint = "the export was changed since it was written; export it again"
        return _mismatch(name, listed.manifest_sha256, actual), hint
    return None, None


def import_export(
    workspace: Workspace, export: ExportSource, *, trust: Trust, echo: Echo | None = None
) -> ImportReport:
    """Import every package of `export` that the workspace lacks, each verified (its
    signature under `trust`); never raises for one package that fails (see
    ImportReport.raise_for_failure)."""
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    outcomes: list[ImportOutcome] = []
    workspace.repos_dir.mkdir(parents=True, exist_ok=True)
    archive = tarfile.open(export.path, "r:*") if export.kind == "tar" else None  # noqa: SIM115
    tmp = Path(tempfile.mkdtemp(prefix=".corpus-import-", dir=workspace.repos_dir))
    total = len(export.packages)
    try:
        for position, name in enumerate(export.packages, start=1):
            head = f"[{position}/{total}] {name}"
            if archive is not None:
                members = export.members.get(name, [])
                actual = _tar_manifest_sha(archive, members) if members else None
            else:
                members = []
                manifest = export.path / name / "manifest.json"
                actual = sha256_file(manifest) if manifest.is_file() else None
            present = _present(workspace.repos_dir, name, actual)
            if present is not None:
                say(f"{head}: present ({present.note})")
                outcomes.append(present)
                continue
            error, hint = _listing_error(export, name, archive is not None, members, actual)
            if error is None:
                say(f"{head}: verifying and importing")
                try:
                    if archive is not None:
                        single = tmp / f"{name}.tar"
                        _single_tar(archive, members, single)
                        result = import_package(workspace, single, name, trust=trust)
                        single.unlink()
                    else:
                        result = import_package(workspace, export.path / name, name, trust=trust)
                except CraError as exc:
                    error, hint = one_line(exc.message), exc.hint
                    # A folder's checks ran in the importer's `staged` copy: name the package.
                    if error.startswith("staged: "):
                        error = f"{name}: {error.removeprefix('staged: ')}"
                except Exception as exc:  # a bug in one package must not stop the rest
                    say(traceback.format_exc().rstrip())
                    error = f"internal error: {type(exc).__name__}: {one_line(str(exc))}"
                else:
                    say(f"{head}: imported")
                    outcomes.append(
                        ImportOutcome(
                            name,
                            "imported",
                            commits=_commits(result),
                            environments=len(result.manifest.environments),
                            wheels=len(result.manifest.wheels),
                        )
                    )
                    continue
            say(f"{head}: failed: {error}")
            outcomes.append(ImportOutcome(name, "failed", error=error, hint=hint))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if archive is not None:
            archive.close()
    return ImportReport(
        export.path, export.kind, tuple(outcomes), export.ignored, time.perf_counter() - started
    )
