"""`cra env build`: an environment from packages/ only, cached by what it installs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.env.build import MARKER, MissingRequirement, build_env
from cra.errors import ChecksumMismatch
from cra.repos.manifest import load_manifest, write_manifest
from cra.workspace import Workspace
from tests.env.helpers import checkout, run_tests
from tests.helpers import wheel_of


def test_build_then_reuse_and_run_the_tests(
    workspace: Workspace, packed: Path, tmp_path: Path
) -> None:
    """An env is built once from the packed wheels, then reused, and runs the repo's tests."""
    first = build_env(workspace, "tally")
    assert not first.cached
    assert first.path.parent == workspace.harness_dir / "envs"
    assert (first.installer, first.mode, first.wheels) == ("uv", "pythonpath", 7)
    marker = json.loads((first.path / MARKER).read_text())
    assert marker["key"] == first.key
    assert set(marker["wheels"]) == {p.name for p in (packed / "packages").iterdir()}
    assert [p.name for p in first.path.parent.iterdir()] == [first.key]  # no temp dir left
    second = build_env(workspace, "tally")
    assert second.cached and second.path == first.path
    assert second.seconds < 0.5
    tree = checkout(packed, tmp_path / "tree")
    proc = run_tests(first, tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    assert first.test_argv()[-1] == "--timeout=120"


def test_pip_fallback_builds_the_same_wheels(workspace: Workspace, packed: Path) -> None:
    """The pip installer builds an env of only the packed wheels, keyed apart from uv's."""
    built = build_env(workspace, "tally", installer="pip")
    assert built.installer == "pip" and not built.cached
    listed = subprocess.run(
        [str(built.python), "-m", "pip", "--version"], capture_output=True, check=False
    )
    assert listed.returncode != 0  # no pip inside: the env holds only the packed wheels
    import_ok = subprocess.run(
        [str(built.python), "-c", "import pytest, pytest_timeout"], capture_output=True, check=False
    )
    assert import_ok.returncode == 0
    assert build_env(workspace, "tally", installer="uv").key != built.key


def test_a_requirement_with_no_wheel_names_it_and_the_fix(
    workspace: Workspace, packed: Path
) -> None:
    """A pinned requirement with no wheel fails the build, naming the pin and the re-pack fix."""
    path = packed / "manifest.json"
    manifest = load_manifest(path)
    gone = wheel_of(packed / "packages", "pytest-timeout")
    pin = "pytest-timeout==" + gone.split("-")[1]  # the version the wheelhouse holds
    (packed / "packages" / gone).unlink()
    env = manifest.environments[0]
    from dataclasses import replace

    write_manifest(
        path,
        replace(
            manifest,
            wheels=tuple(w for w in manifest.wheels if w.file != gone),
            environments=(replace(env, wheels=tuple(f for f in env.wheels if f != gone)),),
        ),
    )
    with pytest.raises(MissingRequirement) as info:
        build_env(workspace, "tally")
    assert info.value.requirement == pin
    result = CliRunner().invoke(cli, ["env", "build", "tally"])
    assert result.exit_code == 1
    assert f"error: requirement {pin} of package 'tally': no wheel" in result.output
    assert "hint: re-pack on a connected machine with `cra repo pack ... --requirement " in (
        result.output
    )
    assert list((workspace.harness_dir / "envs").glob("*")) == []


def test_a_wheel_changed_after_import_is_not_installed(workspace: Workspace, packed: Path) -> None:
    """A wheel whose bytes changed after import fails its checksum and is not installed."""
    name = wheel_of(packed / "packages", "pluggy")
    wheel = packed / "packages" / name
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=re.escape(name)):
        build_env(workspace, "tally")


def test_editable_mode_installs_only_wheels_on_the_host(
    workspace: Workspace, packed: Path, wheelhouse: Path
) -> None:
    """The project is built per commit in the sandbox (tests/env/test_build_sandboxed.py),
    never into the environment."""
    from cra.repos.pack import PackOptions, pack

    source = packed / "repo"
    pack(
        workspace,
        str(source),
        PackOptions(name="tally-ed", find_links=wheelhouse, install_mode="editable"),
    )
    built = build_env(workspace, "tally-ed")
    assert built.mode == "editable" and built.needs_build
    site = next(built.path.glob("lib/python*/site-packages"))
    assert not list(site.glob("tally*")) and not list(site.glob("*editable*"))
    step = built.build_step(workspace.root / "tree", workspace.root / "site")
    assert step is not None and "editable" in step.argv
    assert build_env(workspace, "tally").build_step(workspace.root, workspace.root) is None


def test_unknown_environment_lists_the_known_ones(workspace: Workspace, packed: Path) -> None:
    """Building an unknown environment fails and lists the known ones."""
    result = CliRunner().invoke(cli, ["env", "build", "tally", "--env", "1999"])
    assert result.exit_code == 1
    assert "no environment '1999'" in result.output and "known: 2023..2024" in result.output
