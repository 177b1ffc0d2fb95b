"""Helpers for the environment tests: a package's head checkout, its tests run in an env."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from cra.env.build import BuiltEnv
from cra.git import git_bytes


def checkout(packed: Path, dest: Path) -> Path:
    """The head tree of a package's clone, exported to `dest`."""
    dest.mkdir()
    data = git_bytes("archive", "--format=tar", "HEAD", cwd=packed / "repo")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(dest, filter="data")
    return dest


def run_tests(env: BuiltEnv, tree: Path) -> subprocess.CompletedProcess[str]:
    """The project's test command in `env`, on the checkout `tree`."""
    return subprocess.run(
        env.test_argv("-q", "-p", "no:cacheprovider"),
        cwd=tree,
        env=env.run_env(tree),
        capture_output=True,
        text=True,
        check=False,
    )
