"""Dependencies that exist only as sdists are built into wheels in the sandbox at pack
time: their setup.py never runs on the host, neither to resolve nor to build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cra.env.build import build_env
from cra.errors import CraError
from cra.fixtures.history import ProjectRepo
from cra.fsutil import sha256_file
from cra.repos.eras import failed_builds
from cra.repos.fetch import FetchError
from cra.repos.pack import PackOptions, pack
from cra.repos.sdist import BuildSandbox, SdistBuilder
from cra.workspace import Workspace
from tests.repos.sdist_helpers import make_legacy_sdist


def _links(wheelhouse: Path, tmp_path: Path) -> Path:
    links = tmp_path / "links"
    shutil.copytree(wheelhouse, links)
    return links


def test_an_sdist_only_dependency_is_built_in_the_sandbox_never_on_the_host(
    workspace: Workspace, project_repo: ProjectRepo, tmp_path: Path, wheelhouse: Path
) -> None:
    """Pack (offline) resolves and builds the sdist; its setup.py never writes the host
    marker, saw none of the host's folders, and the built wheel installs in the env."""
    links = _links(wheelhouse, tmp_path)
    marker = tmp_path / "host" / "marker"
    marker.parent.mkdir()
    make_legacy_sdist(links, "markerprobe", "1.0", marker=marker)
    result = pack(
        workspace,
        str(project_repo.path),
        PackOptions(name="tally", find_links=links, requirements=("markerprobe",)),
    )
    assert not marker.exists()
    assert result.wheels_built == 1
    env = result.manifest.environments[0]
    assert "markerprobe==1.0" in env.requirements
    wheel = result.package.packages_dir / "markerprobe-1.0-py3-none-any.whl"
    assert wheel.is_file()
    assert result.manifest.wheel(wheel.name).sha256 == sha256_file(wheel)
    built = build_env(workspace, "tally", env_id=env.id)
    out = subprocess.run(
        [str(built.python), "-c", "import markerprobe; print(markerprobe.SAW_HOST)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
    assert not marker.exists()


def test_the_same_setup_py_run_on_the_host_writes_the_marker(tmp_path: Path) -> None:
    """The probe is real: run on the host, its setup.py writes the marker."""
    marker = tmp_path / "host" / "marker"
    marker.parent.mkdir()
    sdist = make_legacy_sdist(tmp_path / "links", "markerprobe", "1.0", marker=marker)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    tree = tmp_path / "src" / "markerprobe-1.0"
    subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=tree, check=True, capture_output=True
    )
    assert marker.read_text() == "setup.py ran here"
    assert (tree / "markerprobe.py").read_text() == "SAW_HOST = True\n"


def _builder(workspace: Workspace, tmp_path: Path, links: Path) -> SdistBuilder:
    return SdistBuilder(
        tmp_path / "built",
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        find_links=links,
        use_index=False,
        uv_cache=workspace.harness_dir / "uv-cache",
        sandbox=BuildSandbox.from_settings(workspace.config.settings.validate, allow_unsafe=False),
    )


def test_an_sdist_that_fails_to_build_names_its_package(
    workspace: Workspace, tmp_path: Path, wheelhouse: Path
) -> None:
    """A failing sandboxed build is a FetchError naming name==version, which the era
    ladder reads to move that package alone to a later bound."""
    links = _links(wheelhouse, tmp_path)
    make_legacy_sdist(links, "brokenprobe", "1.0", marker=tmp_path / "marker", fail=True)
    builder = _builder(workspace, tmp_path, links)
    (sdist,) = builder.sdists("brokenprobe")
    with pytest.raises(FetchError) as caught:
        builder.build(sdist)
    message = str(caught.value)
    assert "brokenprobe==1.0" in message and "this sdist refuses to build" in message
    assert failed_builds(message) == {"brokenprobe"}
    assert list((tmp_path / "built").iterdir()) == []
    assert not (tmp_path / "marker").exists()


def test_a_failing_sdist_leaves_its_era_unusable_with_the_reason(
    workspace: Workspace, project_repo: ProjectRepo, tmp_path: Path, wheelhouse: Path
) -> None:
    """Offline, no later bound can help: the era records the build failure and pack
    says which package it was."""
    links = _links(wheelhouse, tmp_path)
    make_legacy_sdist(links, "brokenprobe", "1.0", marker=tmp_path / "marker", fail=True)
    with pytest.raises(CraError, match=r"brokenprobe==1\.0"):
        pack(
            workspace,
            str(project_repo.path),
            PackOptions(
                name="tally", find_links=links, requirements=("brokenprobe",), single_env=True
            ),
        )
