"""Where the parts of a repo package live, and how a package is found by name."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cra.db.repos import upsert_repo
from cra.errors import NotFound, UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """Return `name` if it is a valid package name, else raise UsageError."""
    if not NAME_RE.match(name) or name in {".", ".."}:
        raise UsageError(
            f"invalid repository name {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


@dataclass(frozen=True)
class RepoPackage:
    """A repo package directory: the clone, the wheels, the manifest."""

    root: Path

    @property
    def name(self) -> str:
        """The package's name (its directory name)."""
        return self.root.name

    @property
    def repo_dir(self) -> Path:
        """The full git clone."""
        return self.root / "repo"

    @property
    def packages_dir(self) -> Path:
        """The wheels that build and test the project offline."""
        return self.root / "packages"

    @property
    def manifest_path(self) -> Path:
        """`manifest.json`."""
        return self.root / "manifest.json"


def package_path(repos_dir: Path, name: str) -> RepoPackage:
    """The package called `name` in the workspace's `repos_dir`, whether it exists or not."""
    return RepoPackage(repos_dir / check_name(name))


def require_package(repos_dir: Path, name: str) -> RepoPackage:
    """The package called `name`; raise NotFound with a hint when it has no git clone."""
    package = package_path(repos_dir, name)
    if not (package.repo_dir / ".git").exists() and not (package.repo_dir / "HEAD").exists():
        known = sorted(p.name for p in repos_dir.iterdir() if p.is_dir())
        raise NotFound(
            f"no repository {name!r} in {repos_dir}",
            hint=(f"known: {', '.join(known)}; " if known else "")
            + "add one with `cra repo pack` or `cra repo import`",
        )
    return package


def register_repo(
    conn: sqlite3.Connection,
    name: str,
    *,
    source_url: str | None = None,
    head_sha: str | None = None,
    domain: str | None = None,
    manifest_sha256: str | None = None,
) -> int:
    """Insert or update the `repos` row for `name`; return its id. Unknown fields keep
    their stored value."""
    return upsert_repo(
        conn,
        name,
        source_url=source_url,
        head_sha=head_sha,
        domain=domain,
        manifest_sha256=manifest_sha256,
    )
