"""The offline claim, proven: after pack, everything runs in a network namespace with no
interfaces (`unshare -n`), not by trusting flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cra
from cra.env.build import build_env
from cra.fixtures.history import ProjectRepo
from cra.workspace import init_workspace
from tests.env.helpers import checkout, run_tests
from tests.helpers import trust_key
from tests.repos.helpers import export_tar

ROOT = Path(cra.__file__).resolve().parents[1]


def _netns_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    return (
        subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0
    )


pytestmark = pytest.mark.skipif(
    not _netns_available(), reason="unshare -n (a network namespace) is not permitted here"
)


def offline(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv in a new network namespace: no interface but a downed loopback."""
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + base["PYTHONPATH"] if "PYTHONPATH" in base else ""
    )
    return subprocess.run(
        ["unshare", "-n", *argv], env=base, cwd=cwd, capture_output=True, text=True, check=False
    )


def cra_offline(*args: str) -> subprocess.CompletedProcess[str]:
    """`cra ARGS` with no network."""
    return offline(sys.executable, "-m", "cra", *args)


def test_the_namespace_really_has_no_network() -> None:
    """The offline namespace used by these checks cannot open a network connection."""
    probe = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)"
    proc = offline(sys.executable, "-c", probe)
    assert proc.returncode != 0
    assert "Network is unreachable" in proc.stderr or "OSError" in proc.stderr


def test_pack_import_verify_build_and_test_with_no_network(
    project_repo: ProjectRepo, wheelhouse: Path, tmp_path: Path
) -> None:
    """Pack, import, verify, build and test all work with no network at all."""
    connected = init_workspace(tmp_path / "connected").workspace
    airgapped = init_workspace(tmp_path / "airgapped").workspace
    packed = cra_offline(
        "-w",
        str(connected.root),
        "repo",
        "pack",
        str(project_repo.path),
        "--name",
        "tally",
        "--find-links",
        str(wheelhouse),
    )
    assert packed.returncode == 0, packed.stderr
    assert "packed tally: 20 commits" in packed.stdout
    usb = export_tar(connected.repos_dir / "tally", tmp_path / "tally.tar")
    # The user copies the connected machine's key into the air-gapped cra.toml.
    key = cra_offline("-w", str(connected.root), "repo", "key")
    trust_key(airgapped.root, key.stdout.strip())

    imported = cra_offline("-w", str(airgapped.root), "repo", "import", str(usb))
    assert imported.returncode == 0, imported.stderr
    assert f"imported tally into {airgapped.repos_dir / 'tally'}" in imported.stdout

    verified = cra_offline("-w", str(airgapped.root), "repo", "verify", "tally", "--json")
    assert verified.returncode == 0, verified.stderr
    checks = json.loads(verified.stdout)["checks"]
    assert [(c["name"], c["ok"]) for c in checks] == [
        ("layout", True),
        ("manifest", True),
        ("wheels", True),
        ("eras", True),
        ("signature", True),
        ("git", True),
    ]

    built = cra_offline("-w", str(airgapped.root), "env", "build", "tally", "--json")
    assert built.returncode == 0, built.stderr
    (info,) = json.loads(built.stdout)
    assert (info["cached"], info["installer"], info["wheels"]) == (False, "uv", 7)
    again = cra_offline("-w", str(airgapped.root), "env", "build", "tally", "--json")
    assert json.loads(again.stdout)[0]["cached"] is True

    env = build_env(airgapped, "tally")  # the cached one: same key, nothing built
    assert env.cached and str(env.path) == info["path"]
    tree = checkout(airgapped.repos_dir / "tally", tmp_path / "tree")
    online = run_tests(env, tree)
    proc = offline(*env.test_argv("-q", "-p", "no:cacheprovider"), env=env.run_env(tree), cwd=tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        proc.stdout.strip().splitlines()[-1].split(" in ")[0]
        == (online.stdout.strip().splitlines()[-1].split(" in ")[0])
    )
    assert " passed" in proc.stdout and "failed" not in proc.stdout
