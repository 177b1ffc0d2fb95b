"""Workspace resolution order and `cra init`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.config import CONFIG_NAME, Config, load_config
from cra.errors import WorkspaceError
from cra.workspace import FOLDERS, init_workspace, open_workspace, resolve_root


def test_explicit_path_beats_env_and_parents(tmp_path: Path) -> None:
    """An explicit workspace path beats CRA_HOME and parent configs."""
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / CONFIG_NAME).write_text("")
    cwd = tmp_path / "parent" / "child"
    cwd.mkdir()
    env = {"CRA_HOME": str(tmp_path / "env")}
    assert resolve_root(tmp_path / "explicit", environ=env, cwd=cwd) == tmp_path / "explicit"


def test_env_beats_parent_config(tmp_path: Path) -> None:
    """CRA_HOME beats a cra.toml in a parent folder."""
    (tmp_path / CONFIG_NAME).write_text("")
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    env = {"CRA_HOME": str(tmp_path / "env")}
    assert resolve_root(None, environ=env, cwd=cwd) == tmp_path / "env"


def test_nearest_parent_with_config_beats_cwd(tmp_path: Path) -> None:
    """The nearest parent folder with a cra.toml beats the current folder."""
    (tmp_path / CONFIG_NAME).write_text("")
    (tmp_path / "a" / CONFIG_NAME).parent.mkdir()
    (tmp_path / "a" / CONFIG_NAME).write_text("")
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    assert resolve_root(None, environ={}, cwd=cwd) == tmp_path / "a"


def test_cwd_is_the_last_resort(tmp_path: Path) -> None:
    """The current folder is the workspace when nothing else names one."""
    cwd = tmp_path / "nowhere"
    cwd.mkdir()
    assert resolve_root(None, environ={}, cwd=cwd) == cwd


def test_empty_env_var_is_ignored(tmp_path: Path) -> None:
    """An empty CRA_HOME is ignored."""
    assert resolve_root(None, environ={"CRA_HOME": ""}, cwd=tmp_path) == tmp_path


def test_init_creates_everything(tmp_path: Path) -> None:
    """init creates every folder, both databases and a default cra.toml."""
    report = init_workspace(tmp_path / "ws")
    root = tmp_path / "ws"
    for name in FOLDERS:
        assert (root / name).is_dir()
    assert (root / CONFIG_NAME).is_file()
    assert (root / "db" / "raw.db").is_file()
    assert (root / "db" / "curated.db").is_file()
    assert root / CONFIG_NAME in report.created
    assert load_config(root / CONFIG_NAME).values == Config.defaults().values


def test_init_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    """init again creates nothing and never overwrites config or files."""
    root = tmp_path / "ws"
    init_workspace(root)
    custom = "[db]\nbusy_timeout_ms = 1234\n"
    (root / CONFIG_NAME).write_text(custom)
    (root / "repos" / "keep.txt").write_text("mine")
    again = init_workspace(root)
    assert again.created == ()
    assert (root / CONFIG_NAME).read_text() == custom
    assert (root / "repos" / "keep.txt").read_text() == "mine"
    assert again.workspace.config.settings.db.busy_timeout_ms == 1234


def test_init_completes_a_partial_workspace(tmp_path: Path) -> None:
    """init recreates only the missing parts of a partial workspace."""
    root = tmp_path / "ws"
    init_workspace(root)
    (root / "adapters").rmdir()
    report = init_workspace(root)
    assert report.created == (root / "adapters",)


def test_init_refuses_a_file(tmp_path: Path) -> None:
    """init refuses a target that is a file."""
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(WorkspaceError, match="not a directory"):
        init_workspace(target)


def test_open_unknown_workspace_path(tmp_path: Path) -> None:
    """Opening a missing workspace path fails with a hint to run cra init."""
    with pytest.raises(WorkspaceError, match="does not exist") as info:
        open_workspace(tmp_path / "missing")
    assert "cra init" in (info.value.hint or "")


def test_open_directory_without_config(tmp_path: Path) -> None:
    """Opening a folder without cra.toml fails as not a cra workspace."""
    with pytest.raises(WorkspaceError, match="not a cra workspace"):
        open_workspace(tmp_path)


def test_open_uses_cra_home(workspace) -> None:
    """Opening with no path uses CRA_HOME."""
    assert open_workspace().root == workspace.root
