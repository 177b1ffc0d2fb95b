"""`cra repo pack`: a clone, one wheel per pin (stored once), and a manifest per era."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.fixtures.history import ProjectRepo
from cra.fixtures.wheelhouse import make_sdist, make_wheel
from cra.git import GitError, git
from cra.repos.manifest import load_manifest
from cra.repos.pack import PackOptions, pack, split_eras
from cra.workspace import Workspace
from tests.helpers import wheel_of, wheel_pins
from tests.repos.helpers import make_repo, repos_entries


def test_pack_from_a_local_wheelhouse(
    workspace: Workspace, project_repo: ProjectRepo, wheelhouse: Path
) -> None:
    """Pack from a local wheelhouse records source, layout, one merged era and exact pins."""
    result = pack(
        workspace,
        str(project_repo.path),
        PackOptions(name="tally", find_links=wheelhouse, domain="stats"),
    )
    package = result.package
    manifest = load_manifest(package.manifest_path)
    assert manifest.head == project_repo.head
    assert manifest.source == {
        "url": str(project_repo.path),
        "ref": "main",
        "head": project_repo.head,
        "branch": "main",
    }
    assert manifest.domain == "stats"
    assert manifest.importable == {"mode": "pythonpath", "pythonpath": ["src"], "env": {}}
    assert manifest.test["command"] == "python -m pytest"
    assert manifest.test["per_test_timeout_s"] == 120.0
    # The factory history spans 2023 and 2024; from local files alone both years resolve
    # alike, so the two eras merge into one environment covering all dates.
    (env,) = manifest.environments
    assert env.id == "2023..2024"
    assert (env.start, env.until) == (None, None)
    assert env.date_bound.startswith("not applied")
    # pytest, its four dependencies, pytest-timeout and setuptools, each pinned at the one
    # version the wheelhouse holds (whatever the registry served when it was installed).
    pins = wheel_pins(wheelhouse)
    assert [p.split("==")[0] for p in pins] == [
        "iniconfig",
        "packaging",
        "pluggy",
        "pygments",
        "pytest",
        "pytest-timeout",
        "setuptools",
    ]
    assert list(env.requirements) == pins
    assert sorted(p.name for p in package.packages_dir.iterdir()) == sorted(env.wheels)
    assert result.wheels_copied == len(pins) == 7
    assert result.commits == len(project_repo.commits)
    # The clone: all history, no remote, no hooks, nothing checked out.
    repo = package.repo_dir
    assert git("remote", cwd=repo).strip() == ""
    assert int(git("rev-list", "--count", "HEAD", cwd=repo)) == len(project_repo.commits)
    assert sorted(p.name for p in repo.iterdir()) == [".git"]
    assert not (repo / ".git" / "hooks").exists()  # a fresh repository cra made itself
    assert repos_entries(workspace.repos_dir) == ["tally"]
    with closing(workspace.raw_db()) as conn:
        row = conn.execute("SELECT head_sha, domain FROM repos WHERE name = 'tally'").fetchone()
    assert tuple(row) == (project_repo.head, "stats")


def test_eras_resolve_requirements_as_they_were(
    workspace: Workspace, tmp_path: Path, wheelhouse: Path
) -> None:
    """Each era resolves the requirements of its own time; shared wheels are stored once."""
    links = tmp_path / "links"
    shutil.copytree(wheelhouse, links)
    make_wheel(links, "eraprobe", "1.0")
    make_wheel(links, "eraprobe", "2.0")
    tests = {"tests/test_a.py": "def test_a():\n    pass\n", "a/__init__.py": ""}
    repo = make_repo(
        tmp_path / "eras",
        [
            ("2022-03-01T00:00:00Z", {**tests, "requirements.txt": "eraprobe<2\n"}),
            ("2022-11-01T00:00:00Z", {"README": "x\n"}),
            ("2023-06-01T00:00:00Z", {"requirements.txt": "eraprobe>=2\n"}),
        ],
    )
    old_sha = git("rev-parse", "HEAD~1", cwd=repo).strip()
    manifest = pack(workspace, str(repo), PackOptions(name="eras", find_links=links)).manifest
    assert [e.id for e in manifest.environments] == ["2022", "2023"]
    old, new = manifest.environments
    assert (old.start, old.until, new.start, new.until) == (None, "2023-01-01", "2023-01-01", None)
    assert old.resolved_at == old_sha
    assert "eraprobe==1.0" in old.requirements
    assert "eraprobe==2.0" in new.requirements
    pytest_wheel = wheel_of(wheelhouse, "pytest")
    assert pytest_wheel in old.wheels
    assert pytest_wheel in new.wheels
    files = [w.file for w in manifest.wheels]
    assert files.count(pytest_wheel) == 1  # shared wheels stored once
    assert len(files) == 8  # pytest, its 4 dependencies, pytest-timeout, two eraprobes
    assert manifest.environment_for(datetime(2022, 7, 1, tzinfo=UTC)).id == "2022"
    assert manifest.environment_for(datetime(2025, 1, 1, tzinfo=UTC)).id == "2023"


def test_eras_follow_the_configured_length(project_repo: ProjectRepo) -> None:
    """Eras split history by the configured months, or into one era when asked for a single."""
    eras = split_eras(project_repo.path, project_repo.head, months=6)
    assert [e.id for e in eras] == ["2023-01", "2023-07", "2024-01", "2024-07"]
    assert sum(e.commits for e in eras) == len(project_repo.commits)
    assert eras[-1].last_sha == project_repo.head
    (single,) = split_eras(project_repo.path, project_repo.head, months=12, single=True)
    assert (single.id, single.commits) == ("all", len(project_repo.commits))


def test_an_sdist_only_dependency_is_built_at_pack_time(
    workspace: Workspace, project_repo: ProjectRepo, tmp_path: Path, wheelhouse: Path
) -> None:
    """A dependency with only an sdist is built into a wheel at pack time and stored."""
    links = tmp_path / "links"
    shutil.copytree(wheelhouse, links)
    make_sdist(links, "sdistonly", "1.0")
    result = pack(
        workspace,
        str(project_repo.path),
        PackOptions(name="tally", find_links=links, requirements=("sdistonly",)),
    )
    assert result.wheels_built == 1
    assert "sdistonly==1.0" in result.manifest.environments[0].requirements
    assert (result.package.packages_dir / "sdistonly-1.0-py3-none-any.whl").is_file()


def _pack_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["repo", "pack", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("case", "message", "hint"),
    [
        ("plain_dir", "is not a git repository", "hint: give the path of a git clone"),
        ("empty", "is an empty repository (no commits)", "hint: commit something first"),
        ("unknown_ref", "unknown ref 'nope'", "hint: known refs: main"),
        ("python", "unsupported Python version '2.7'", "hint: give --python as one of 3.8"),
        ("no_tests", "found no test command", "hint: give one with --test-cmd, e.g. --test-cmd"),
        ("missing", "does not exist", "hint: give a local git repository or a URL"),
    ],
)
def test_bad_input_is_one_clear_line(
    workspace: Workspace, tmp_path: Path, wheelhouse: Path, case: str, message: str, hint: str
) -> None:
    """Bad pack input exits 2 with one error line and one hint, no traceback, nothing written."""
    args = ["--name", "x", "--find-links", str(wheelhouse)]
    source = tmp_path / case
    if case == "plain_dir":
        source.mkdir()
    elif case == "empty":
        make_repo(source, [])
    elif case in ("unknown_ref", "python"):
        make_repo(source, [("2024-01-01T00:00:00Z", {"tests/test_a.py": "", "a/__init__.py": ""})])
        args += ["--ref", "nope"] if case == "unknown_ref" else ["--python", "2.7"]
    elif case == "no_tests":
        make_repo(source, [("2024-01-01T00:00:00Z", {"a/__init__.py": "", "README": "x\n"})])
    code, output = _pack_cli(str(source), *args)
    lines = [line for line in output.splitlines() if line.startswith(("error:", "hint:"))]
    assert code == 2, output
    assert len(lines) == 2 and lines[0].startswith("error: ") and message in lines[0], output
    assert lines[1].startswith(hint), output
    assert "Traceback" not in output
    assert repos_entries(workspace.repos_dir) == []


def test_an_existing_package_is_kept_unless_replaced(
    workspace: Workspace, project_repo: ProjectRepo, wheelhouse: Path
) -> None:
    """Pack refuses to overwrite an existing package unless --replace is given."""
    options = PackOptions(name="tally", find_links=wheelhouse)
    pack(workspace, str(project_repo.path), options)
    code, output = _pack_cli(
        str(project_repo.path), "--name", "tally", "--find-links", str(wheelhouse)
    )
    assert code == 2 and "already exists" in output and "--replace" in output
    code, output = _pack_cli(
        str(project_repo.path),
        "--name",
        "tally",
        "--replace",
        "--find-links",
        str(wheelhouse),
        "--single-env",
    )
    assert code == 0, output
    assert (
        load_manifest(workspace.repos_dir / "tally" / "manifest.json").environments[0].id == "all"
    )
    assert repos_entries(workspace.repos_dir) == ["tally"]


@pytest.mark.network
def test_pack_from_the_registry_bounds_each_era_by_date(
    workspace: Workspace, project_repo: ProjectRepo
) -> None:
    """The factory history asks for pytest>=7 in 2023 and pytest>=8 in 2024: the 2023
    environment must get a pytest released before 2024."""
    result = pack(workspace, str(project_repo.path), PackOptions(name="tally", python="3.11"))
    envs = {e.id: e for e in result.manifest.environments}
    assert set(envs) == {"2023", "2024"}
    assert envs["2023"].exclude_newer == "2024-01-01T00:00:00+00:00"
    assert envs["2023"].date_bound == "applied"
    pytest_2023 = next(p for p in envs["2023"].requirements if p.startswith("pytest=="))
    pytest_2024 = next(p for p in envs["2024"].requirements if p.startswith("pytest=="))
    assert pytest_2023.startswith("pytest==7.")
    assert not pytest_2024.startswith("pytest==7.")
    assert result.wheels_downloaded == len(result.manifest.wheels)
    data = json.loads(result.package.manifest_path.read_text())
    assert {w["file"] for w in data["wheels"]} == {
        p.name for p in result.package.packages_dir.iterdir()
    }


def test_a_tag_or_commit_ref_packs_only_its_history(
    workspace: Workspace, project_repo: ProjectRepo, wheelhouse: Path
) -> None:
    """Packing at a tag keeps only its history; objects of later commits are gone."""
    target = project_repo.commits[5]
    git("tag", "v0.1", target.sha, cwd=project_repo.path)
    result = pack(
        workspace,
        str(project_repo.path),
        PackOptions(name="old", ref="v0.1", find_links=wheelhouse),
    )
    assert result.manifest.source["head"] == target.sha
    assert result.manifest.source["branch"] == "main"
    assert result.commits == 6
    repo = result.package.repo_dir
    assert git("for-each-ref", "--format=%(refname)", cwd=repo).split() == [
        "refs/heads/main",
        "refs/tags/v0.1",
    ]
    # Objects of later commits are gone, not just unreferenced.
    later = project_repo.commits[6].sha
    assert git("cat-file", "-t", target.sha, cwd=repo).strip() == "commit"
    with pytest.raises(GitError):
        git("cat-file", "-t", later, cwd=repo)
