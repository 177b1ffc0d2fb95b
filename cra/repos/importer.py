"""`cra repo import`: a repo package from a mounted folder or a `.tar`, verified first.

Everything is copied into a temporary folder under `repos/`, verified there (the same
checks as `cra repo verify`), and renamed into place only when every check passed.
Symlinks, hard links, devices, absolute paths and `..` are refused while copying, so
nothing is ever written outside the temporary folder; on any failure it is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from cra.errors import CraError, UsageError
from cra.fsutil import sha256_file
from cra.repos.layout import RepoPackage, check_name, package_path, register_repo
from cra.repos.manifest import Manifest, write_manifest
from cra.repos.signing import Trust
from cra.repos.verify import VerifyReport, stamp_verified, verify_package
from cra.workspace import Workspace


class UnsafePackage(CraError, ValueError):
    """The source holds an entry that could write outside the package."""

    def __init__(self, source: Path, entry: str, why: str) -> None:
        super().__init__(
            f"{source}: {entry}: {why}; nothing was imported",
            hint="a repo package holds only regular files and folders; re-export it",
        )
        self.entry = entry


@dataclass(frozen=True)
class ImportResult:
    """The imported package and the verdicts it passed."""

    package: RepoPackage
    manifest: Manifest
    report: VerifyReport


def _safe_parts(name: str, source: Path) -> tuple[str, ...]:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePackage(source, name, "absolute path")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafePackage(source, name, "'..' escapes the package")
    return parts


def _copy_tree(source: Path, dest: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        rel_dir = Path(dirpath).relative_to(source)
        for entry in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / entry
            rel = (rel_dir / entry).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise UnsafePackage(source, rel, f"symlink to {os.readlink(path)}")
            target = dest / rel
            if stat.S_ISDIR(mode):
                target.mkdir()
            elif stat.S_ISREG(mode):
                shutil.copyfile(path, target, follow_symlinks=False)
            else:
                raise UnsafePackage(source, rel, "not a regular file or folder")


def _extract_tar(source: Path, dest: Path) -> None:
    try:
        archive = tarfile.open(source, "r:*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(f"{source} is not a readable tar archive: {exc}") from None
    with archive:
        members = archive.getmembers()
        for member in members:
            parts = _safe_parts(member.name, source)
            if member.issym() or member.islnk():
                raise UnsafePackage(source, member.name, f"link to {member.linkname}")
            if not (member.isfile() or member.isdir()):
                raise UnsafePackage(source, member.name, "not a regular file or folder")
            if not parts:
                continue
            target = dest.joinpath(*parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            stream = archive.extractfile(member)
            if stream is None:
                raise UnsafePackage(source, member.name, "unreadable member")
            try:
                out = target.open("xb")
            except (FileExistsError, IsADirectoryError, NotADirectoryError):
                raise UnsafePackage(source, member.name, "listed twice or clashes") from None
            with stream, out:
                shutil.copyfileobj(stream, out)


def _package_root(staged: Path) -> Path:
    """The folder holding manifest.json: the staged root, or its single sub-folder."""
    if (staged / "manifest.json").exists():
        return staged
    entries = [p for p in staged.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "manifest.json").exists():
        return entries[0]
    raise UsageError(
        "the source holds no manifest.json (at its top or in its single folder)",
        hint="point at a repo package: a folder with repo/, packages/ and manifest.json",
    )


def import_package(
    workspace: Workspace, source: Path, name: str | None = None, *, trust: Trust
) -> ImportResult:
    """Verify the package at `source` (folder or tar), its signature under `trust`
    included, and add it to `repos/`.

    Raises UnsafePackage, PackageInvalid or UsageError and writes nothing on any failure.
    """
    source = Path(source).expanduser().absolute()
    if not source.exists():
        raise UsageError(f"{source} does not exist", hint="give a mounted folder or a .tar")
    if name is not None:
        check_name(name)
    workspace.repos_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=workspace.repos_dir))
    try:
        staged = tmp / "staged"
        staged.mkdir()
        if source.is_dir():
            _copy_tree(source, staged)
        else:
            _extract_tar(source, staged)
        root = _package_root(staged)
        report = verify_package(root, trust)
        report.raise_for_failure()
        manifest = report.manifest
        if manifest is None:  # verify passed, so this cannot be; stay loud if it is
            raise CraError(f"{source}: verified package has no manifest")
        final_name = check_name(name or manifest.name)
        package = package_path(workspace.repos_dir, final_name)
        if package.root.exists():
            raise UsageError(
                f"package {final_name!r} already exists at {package.root}",
                hint=f"import it under another --name, or remove it first with "
                f"`cra repo remove {final_name}`",
            )
        if final_name != manifest.name:
            manifest = replace(manifest, name=final_name)
            write_manifest(root / "manifest.json", manifest)
        root.rename(package.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with closing(workspace.raw_db()) as conn:
        register_repo(
            conn,
            final_name,
            source_url=manifest.source["url"],
            head_sha=manifest.head,
            domain=manifest.domain,
            manifest_sha256=sha256_file(package.manifest_path),
        )
    stamp_verified(workspace.verified_dir, package)
    return ImportResult(package, manifest, report)
