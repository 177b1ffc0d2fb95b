"""The tasks a run works on: a mined repository's qualifying commits, each recorded as a
task (`REPO@SHA12`) before the run does anything with it."""

from __future__ import annotations

import sqlite3

from cra.db.commits import Commit, has_commits
from cra.db.repos import repo_id
from cra.db.tasks import ensure_task
from cra.errors import NotFound
from cra.fsutil import now_iso


def mined_repo_id(conn: sqlite3.Connection, repo: str) -> int:
    """The id of `repo`; NotFound when it has not been mined yet."""
    found = repo_id(conn, repo)
    if found is None or not has_commits(conn, found):
        raise NotFound(
            f"repository {repo!r} has not been mined yet",
            hint=f"run `cra harness mine --repo {repo}` first",
        )
    return found


def record_task(conn: sqlite3.Connection, repo_id: int, repo: str, commit: Commit) -> str:
    """Record the commit's task (once); return its id."""
    return ensure_task(conn, repo_id, repo, commit, now_iso())
