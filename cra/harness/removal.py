"""`cra repo remove`: take a packed repository out of a workspace.

What goes: its package folder (`repos/NAME/`), the environments built for it (the
folders under `harness/envs/` whose marker names the package), its verified stamp, and
its rows in `raw.db` (the repository, its commits, tasks, runs and every record of its
tasks; model calls stay, their task cleared). Rows are deleted rather than marked
removed, so that nothing it leaves keeps feeding plans, funnels or curation, and a later
pack or import under the same name starts clean.

Those rows are the provenance of training data, so removal is refused while a registered
dataset holds rows of the repository's tasks, unless forced: the dataset's files keep
each row's repository, commit and task in its `meta`, but the verdicts, plans and test
runs behind them are gone from `raw.db`.

Nothing is lost on failure: the folders are first renamed aside (`.removing-*`, which no
reader lists), then the rows are deleted in one transaction, and only then are the
folders deleted; if the deletion of the rows fails, the folders are renamed back. The
caller holds the workspace's writer lock.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cra.datasets_store import DatasetUse, datasets_with_repo
from cra.db.repos import delete_repo, repo_id, repo_names
from cra.env.build import MARKER
from cra.errors import CraError, NotFound
from cra.repos.layout import check_name
from cra.repos.verify import clear_stamp
from cra.workspace import Workspace

ASIDE_PREFIX = ".removing-"


class RepoInUse(CraError, ValueError):
    """A registered dataset holds rows of the repository's tasks."""

    def __init__(self, name: str, uses: list[DatasetUse]) -> None:
        listed = ", ".join(f"{u.id} ({u.train} train, {u.eval} eval rows)" for u in uses)
        super().__init__(
            f"repository {name!r} is training provenance: dataset(s) {listed} hold rows "
            "of its tasks",
            hint=f"`cra repo remove {name} --force` removes it anyway (the datasets keep "
            "their files; the raw.db records behind their rows go)",
        )
        self.name = name
        self.uses = tuple(uses)


@dataclass(frozen=True)
class RemovedRepo:
    """What removing a repository took away."""

    name: str
    package: Path | None
    envs: tuple[Path, ...]
    records: bool
    datasets: tuple[DatasetUse, ...]

    def to_dict(self) -> dict[str, object]:
        """The removal as `--json` prints it."""
        return {
            "name": self.name,
            "package": None if self.package is None else str(self.package),
            "envs": [str(p) for p in self.envs],
            "records": self.records,
            "datasets": [{"id": u.id, "train": u.train, "eval": u.eval} for u in self.datasets],
        }


def package_envs(envs_dir: Path, name: str) -> list[Path]:
    """The built environments under `envs_dir` whose marker names package `name`."""
    if not envs_dir.is_dir():
        return []
    found = []
    for folder in sorted(envs_dir.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(marker, dict) and marker.get("package") == name:
            found.append(folder)
    return found


def _aside(path: Path) -> Path:
    """Rename `path` to a hidden name next to it; return the new name."""
    target = path.with_name(f"{ASIDE_PREFIX}{path.name}-{os.getpid()}")
    path.rename(target)
    return target


def remove_repo(workspace: Workspace, name: str, *, force: bool = False) -> RemovedRepo:
    """Remove repository `name` from `workspace` (see the module doc); NotFound when the
    workspace has nothing of it, RepoInUse when a dataset holds its rows and not `force`."""
    package = workspace.repos_dir / check_name(name)
    with closing(workspace.raw_db()) as conn:
        known = repo_id(conn, name) is not None
        uses = datasets_with_repo(conn, workspace.root, name)
        names = repo_names(conn)
    envs = package_envs(workspace.harness_dir / "envs", name)
    has_package = package.is_dir()
    if not (has_package or known or envs):
        packages = sorted(p.name for p in workspace.repos_dir.glob("[!.]*") if p.is_dir())
        known_names = sorted(set(packages) | set(names))
        raise NotFound(
            f"no repository {name!r} in this workspace",
            hint=f"known: {', '.join(known_names)}" if known_names else "nothing is packed yet",
        )
    if uses and not force:
        raise RepoInUse(name, uses)
    moved: list[tuple[Path, Path]] = []
    try:
        for path in ([package] if has_package else []) + envs:
            moved.append((path, _aside(path)))
        with closing(workspace.raw_db()) as conn:
            records = delete_repo(conn, name)
    except BaseException:
        for original, aside in reversed(moved):
            aside.rename(original)
        raise
    for _original, aside in moved:
        shutil.rmtree(aside)
    clear_stamp(workspace.verified_dir, name)
    return RemovedRepo(name, package if has_package else None, tuple(envs), records, tuple(uses))
