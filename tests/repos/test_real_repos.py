"""A real history, with default settings: pack every era, mine, and verify tasks in the
oldest and the newest era in the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cra.db.commits import qualified_commits
from cra.harness.mine import mine_repo
from cra.harness.prove import collecting_share, prove_package
from cra.harness.validate import ValidateOptions, validate_repo
from cra.repos.manifest import load_manifest
from cra.repos.pack import PackOptions, pack
from cra.workspace import Workspace

BUNDLE = Path(__file__).resolve().parents[3] / "shared" / "real-repos" / "parso.bundle"

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _verdicts(workspace: Workspace, env_id: str) -> dict[str, int]:
    with closing(workspace.raw_db()) as conn:
        rows = conn.execute(
            "SELECT verdict, details FROM outcomes WHERE kind = 'validation'"
        ).fetchall()
    out: dict[str, int] = {}
    for verdict, details in rows:
        if json.loads(details).get("env_id") == env_id:
            out[verdict] = out.get(verdict, 0) + 1
    return out


@pytest.mark.skipif(
    not BUNDLE.exists(), reason="the real-repos bundles are not beside the checkout"
)
def test_a_real_history_packs_and_verifies_in_its_oldest_and_newest_era(
    workspace: Workspace, tmp_path: Path
) -> None:
    """parso (2017-2026, setup.py only, old pytest configuration) packs with defaults,
    every era usable; tasks of its first and its last era are verified in the sandbox."""
    source = tmp_path / "parso-src"
    subprocess.run(["git", "clone", "-q", str(BUNDLE), str(source)], check=True)
    result = pack(workspace, str(source), PackOptions(name="parso"))
    manifest = load_manifest(result.package.manifest_path)
    assert all(env.usable for env in manifest.environments)
    assert manifest.environments[0].id.startswith("2017")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    oldest_pytest = next(
        p for p in manifest.environments[0].requirements if p.startswith("pytest==")
    )
    assert int(oldest_pytest.split("==")[1].split(".")[0]) >= 7  # runs on this interpreter
    assert python == manifest.python

    mine_repo(workspace, "parso")
    with closing(workspace.raw_db()) as conn:
        repo_id = conn.execute("SELECT id FROM repos WHERE name = 'parso'").fetchone()[0]
        commits = qualified_commits(conn, repo_id, None)
    newest_commit = datetime.fromisoformat(commits[-3].authored_at)
    oldest = manifest.environments[0]
    newest = manifest.environment_for(datetime.fromisoformat(commits[-1].authored_at))
    assert newest.id != oldest.id and (newest.start or "") >= "2023"
    validate_repo(workspace, "parso", ValidateOptions(limit=4))
    validate_repo(workspace, "parso", ValidateOptions(since=newest_commit.astimezone(UTC)))
    assert _verdicts(workspace, oldest.id).get("verified", 0) >= 1
    assert (
        sum(_verdicts(workspace, e.id).get("verified", 0) for e in manifest.environments[1:]) >= 1
    )

    proofs = {p.env_id: p for p in prove_package(workspace, "parso")}
    assert proofs[newest.id].collects and proofs[newest.id].collected > 100
    share = collecting_share(workspace, "parso", list(proofs.values()))
    assert share.qualifying == share.collecting + share.unusable + share.unproven
    assert share.collecting > 0
