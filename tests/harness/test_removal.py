"""`cra repo remove`: a packed repository leaves the workspace whole or not at all, never
while another writer holds the workspace, and not from under a dataset unless forced."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.db.repos import repo_names
from cra.harness.mine import mine_repo
from cra.harness.removal import RepoInUse, remove_repo
from cra.repos.layout import RepoPackage
from cra.repos.verify import verified_state
from cra.workspace import Workspace, init_workspace
from tests.harness.helpers import marked_env, register_repo_dataset
from tests.workspace_helpers import hold_lock


def _commits(workspace: Workspace) -> int:
    with closing(workspace.raw_db()) as conn:
        return int(conn.execute("SELECT count(*) FROM commits").fetchone()[0])


def test_remove_takes_package_envs_stamp_and_rows(workspace: Workspace, packed) -> None:
    """Removal deletes the package folder, its environments (not another package's), its
    verified stamp and its raw.db rows, and leaves nothing aside."""
    mine_repo(workspace, "tally")
    assert _commits(workspace) > 0
    envs = workspace.harness_dir / "envs"
    mine = marked_env(envs, "aaa", "tally")
    other = marked_env(envs, "bbb", "parso")
    out = CliRunner().invoke(cli, ["-w", str(workspace.root), "repo", "remove", "tally"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("removed tally: its package ")
    assert not packed.exists() and not mine.exists() and other.is_dir()
    assert list(workspace.repos_dir.iterdir()) == []
    assert [p.name for p in envs.iterdir()] == ["bbb"]
    assert verified_state(workspace.verified_dir, RepoPackage(packed)) == "not verified"
    assert _commits(workspace) == 0
    with closing(workspace.raw_db()) as conn:
        assert repo_names(conn) == []
    again = CliRunner().invoke(cli, ["-w", str(workspace.root), "repo", "remove", "tally"])
    assert again.exit_code == 1 and "no repository 'tally' in this workspace" in again.output


def test_a_dataset_holding_its_rows_refuses_removal_unless_forced(
    workspace: Workspace, packed
) -> None:
    """A registered dataset with rows of the repository's tasks refuses removal, naming
    the dataset and --force; --force removes it and says which datasets keep its rows."""
    register_repo_dataset(workspace, "d1", "tally", rows=3)
    register_repo_dataset(workspace, "d2", "other", rows=2)
    with pytest.raises(RepoInUse, match=r"dataset\(s\) d1 \(3 train, 1 eval rows\)"):
        remove_repo(workspace, "tally")
    out = CliRunner().invoke(cli, ["-w", str(workspace.root), "repo", "remove", "tally"])
    assert out.exit_code == 1
    assert "--force" in out.output and packed.is_dir()
    out = CliRunner().invoke(
        cli, ["-w", str(workspace.root), "repo", "remove", "tally", "--force", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["name"] == "tally" and data["records"] is True
    assert data["datasets"] == [{"id": "d1", "train": 3, "eval": 1}]
    assert not packed.exists()
    assert (workspace.datasets_dir / "d1" / "train.jsonl").is_file()


def test_remove_refuses_while_another_process_holds_the_workspace(
    workspace: Workspace, packed
) -> None:
    """While another process holds the writer lock, removal refuses in one line naming it
    and leaves the package in place."""
    holder = hold_lock(workspace.lock_path, "cra harness run")
    try:
        out = CliRunner().invoke(cli, ["-w", str(workspace.root), "repo", "remove", "tally"])
    finally:
        holder.communicate("")
    assert out.exit_code == 1
    first = out.output.splitlines()[0]
    assert first.startswith(f"error: another cra harness run (pid {holder.pid}")
    assert first.endswith("holds this workspace")
    assert (packed / "manifest.json").is_file()


def test_a_failed_removal_puts_every_folder_back(workspace: Workspace, packed) -> None:
    """When the rows cannot be deleted (another connection holds raw.db's write lock),
    the package and its environments are renamed back and the rows stay."""
    config = workspace.root / "cra.toml"
    config.write_text(config.read_text().replace("busy_timeout_ms = 10000", "busy_timeout_ms = 50"))
    workspace = init_workspace(workspace.root).workspace
    env = marked_env(workspace.harness_dir / "envs", "aaa", "tally")
    before = sorted(p.relative_to(packed) for p in packed.rglob("*"))
    blocker = sqlite3.connect(workspace.raw_db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked") as info:
            remove_repo(workspace, "tally")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert any(e.name == "delete_repo" for e in info.traceback)  # after the folders moved
    assert sorted(p.relative_to(packed) for p in packed.rglob("*")) == before
    assert (env / "cra-env.json").is_file()
    assert [p.name for p in workspace.repos_dir.iterdir()] == ["tally"]
    with closing(workspace.raw_db()) as conn:
        assert repo_names(conn) == ["tally"]
