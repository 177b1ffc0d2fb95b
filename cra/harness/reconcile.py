"""Keeping `raw.db`'s commits in step with a package's history.

`cra repo pack --replace` can bring a rewritten history: commits mined from the old one
are no longer in the package's clone, and validating them could only fail (`bad object`)
on every run. Reconciling marks each recorded commit that HEAD no longer reaches as gone
(`commits.gone_at`) and clears the mark of one that is back. Gone commits are never
planned, validated or counted as qualifying; their rows stay as the record of what
happened.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cra.db import transaction
from cra.db.commits import presence, set_gone
from cra.db.repos import repo_id
from cra.fsutil import now_iso
from cra.git import GitError, git
from cra.repos.layout import package_path
from cra.workspace import Workspace

GONE_REASON = "gone from history"
"""The funnel's reason for a commit the package's history no longer has."""


@dataclass(frozen=True)
class Reconciled:
    """What reconciling one repository changed."""

    repo: str
    gone: int
    returned: int


IMPORTED_REFS = "refs/heads/cra-imported"
"""Where the package keeps the commits made for imported tasks whose own commit it lacks
(`IMPORTED_REFS/SHA`): part of its history, though HEAD does not reach them."""


def history_shas(repo_dir: Path) -> set[str] | None:
    """Every commit reachable from HEAD of `repo_dir`, or from a commit kept for an
    imported task (None when it has no HEAD)."""
    try:
        out = git("rev-list", "HEAD", f"--glob={IMPORTED_REFS}/*", cwd=repo_dir)
    except GitError:
        return None
    return set(out.split())


def mark_gone(conn: sqlite3.Connection, repo_id: int, reachable: set[str]) -> tuple[int, int]:
    """Set `gone_at` on the repository's commits not in `reachable`, clear it on those
    that are; return (newly gone, returned)."""
    rows = presence(conn, repo_id)
    gone = [r.id for r in rows if r.gone_at is None and r.sha not in reachable]
    back = [r.id for r in rows if r.gone_at is not None and r.sha in reachable]
    if not gone and not back:
        return 0, 0
    now = now_iso()
    with transaction(conn):
        set_gone(conn, gone, back, now)
    return len(gone), len(back)


def reconcile_history(workspace: Workspace, repo: str) -> Reconciled:
    """Reconcile `repo`'s recorded commits with its package's history (nothing to do
    when it was never mined or has no package)."""
    package = package_path(workspace.repos_dir, repo)
    if not package.repo_dir.is_dir():
        return Reconciled(repo, 0, 0)
    with closing(workspace.raw_db()) as conn:
        found = repo_id(conn, repo)
        if found is None:
            return Reconciled(repo, 0, 0)
        reachable = history_shas(package.repo_dir)
        if reachable is None:
            return Reconciled(repo, 0, 0)
        gone, back = mark_gone(conn, found, reachable)
    return Reconciled(repo, gone, back)
