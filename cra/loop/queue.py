"""The repositories the loop turns to next: packages imported but not yet mined, those of
a domain no mined repository covers first."""

from __future__ import annotations

from contextlib import closing

from cra.db.commits import funnel_counts
from cra.repos.listing import list_packages
from cra.workspace import Workspace


def repo_queue(workspace: Workspace) -> tuple[str, ...]:
    """Unmined (no commits recorded), usable packages: a domain not yet covered first,
    then by name."""
    packages = [p for p in list_packages(workspace) if p.problem is None]
    with closing(workspace.raw_db()) as conn:
        mined = {row.repo for row in funnel_counts(conn, None)}
    covered = {p.domain for p in packages if p.name in mined}
    todo = [p for p in packages if p.name not in mined]
    todo.sort(key=lambda p: (p.domain in covered, p.name))
    return tuple(p.name for p in todo)
