"""The repositories the loop turns to next: packages imported but not yet mined, those of
a domain no mined repository covers first, those of a domain the strategy puts last at
the end."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing

from cra.db.commits import funnel_counts
from cra.repos.listing import list_packages
from cra.workspace import Workspace


def queue_order(
    todo: Sequence[tuple[str, str | None]], covered: set[str | None], last: Sequence[str] = ()
) -> tuple[str, ...]:
    """The names of `todo` (name, domain): a domain in `last` at the end, then a domain
    already `covered` after the others, then by name."""
    ranked = sorted(todo, key=lambda p: (p[1] in last, p[1] in covered, p[0]))
    return tuple(name for name, _domain in ranked)


def repo_queue(workspace: Workspace, last_domains: Sequence[str] = ()) -> tuple[str, ...]:
    """Unmined (no commits recorded), usable packages in :func:`queue_order`."""
    packages = [p for p in list_packages(workspace) if p.problem is None]
    with closing(workspace.raw_db()) as conn:
        mined = {row.repo for row in funnel_counts(conn, None)}
    covered = {p.domain for p in packages if p.name in mined}
    todo = [(p.name, p.domain) for p in packages if p.name not in mined]
    return queue_order(todo, covered, last_domains)


def repo_domains(workspace: Workspace) -> dict[str, str]:
    """Each usable package's domain (where it names one), by name."""
    return {
        p.name: p.domain
        for p in list_packages(workspace)
        if p.problem is None and p.domain is not None
    }
