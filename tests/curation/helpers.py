"""Helpers shared by the curation tests."""

from __future__ import annotations

from contextlib import closing

from cra.db.commits import qualified_commits
from cra.db.repos import repo_id
from cra.db.tasks import ensure_task
from cra.fixtures.ranker import build_ranker_history
from cra.workspace import Workspace, init_workspace

TEACHER = "teacher-large"


def with_teacher(workspace: Workspace) -> Workspace:
    """The workspace with the synthetic teacher model named in `[curate]`."""
    config = workspace.root / "cra.toml"
    text = config.read_text().replace("teacher_models = []", f'teacher_models = ["{TEACHER}"]')
    config.write_text(text)
    return init_workspace(workspace.root).workspace


def ranker_history(workspace: Workspace, *, commits: int = 40, untested_every: int = 4) -> None:
    """The ranker fixture's mined history in `workspace` (every `untested_every`-th commit
    dropped at the tests stage), with a logged task for each qualifying commit."""
    build_ranker_history(workspace, commits=commits, untested_every=untested_every)
    with closing(workspace.raw_db()) as conn:
        rid = repo_id(conn, "toy")
        if rid is None:
            raise LookupError("the ranker history has no repository toy")
        for commit in qualified_commits(conn, rid, None):
            ensure_task(conn, rid, "toy", commit, commit.authored_at)


def ranker_plan_workspace(workspace: Workspace, *, untested_every: int = 4) -> Workspace:
    """`workspace` with the ranker history and `[curate] min_examples` at 5, reopened."""
    ranker_history(workspace, commits=40, untested_every=untested_every)
    config = workspace.root / "cra.toml"
    config.write_text(config.read_text().replace("min_examples = 20", "min_examples = 5"))
    return init_workspace(workspace.root).workspace
