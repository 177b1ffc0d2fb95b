"""`cra repo list`: one summary line per package in `repos/`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cra.errors import CraError
from cra.git import GitError, git
from cra.repos.layout import RepoPackage
from cra.repos.manifest import Manifest, load_manifest
from cra.repos.verify import verified_state
from cra.workspace import Workspace


@dataclass(frozen=True)
class PackageSummary:
    """What `cra repo list` shows for one package."""

    name: str
    commits: int | None
    environments: int | None
    wheels: int | None
    size_bytes: int
    state: str
    domain: str | None
    problem: str | None = None
    unusable: tuple[str, ...] = ()
    """The eras with no environment, each as `ID: reason`."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return asdict(self)


def _size(root: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            total += (Path(dirpath) / name).lstat().st_size
    return total


def _unusable(manifest: Manifest) -> tuple[str, ...]:
    return tuple(f"{e.id}: {e.unusable}" for e in manifest.environments if e.unusable)


def list_packages(workspace: Workspace) -> list[PackageSummary]:
    """Every package in `repos/` (temporary folders of a running pack or import excluded)."""
    out: list[PackageSummary] = []
    if not workspace.repos_dir.is_dir():
        return out
    for root in sorted(workspace.repos_dir.iterdir()):
        if root.name.startswith(".") or not root.is_dir():
            continue
        package = RepoPackage(root)
        try:
            manifest = load_manifest(package.manifest_path)
        except CraError as exc:
            out.append(
                PackageSummary(root.name, None, None, None, _size(root), "invalid", None, str(exc))
            )
            continue
        try:
            commits: int | None = int(
                git("rev-list", "--count", manifest.head, cwd=package.repo_dir).strip()
            )
        except (GitError, ValueError):
            commits = None
        out.append(
            PackageSummary(
                name=root.name,
                commits=commits,
                environments=len(manifest.environments),
                wheels=len(manifest.wheels),
                size_bytes=_size(root),
                state=verified_state(workspace.verified_dir, package),
                domain=manifest.domain,
                unusable=_unusable(manifest),
            )
        )
    return out
