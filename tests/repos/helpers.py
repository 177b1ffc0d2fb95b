"""Small real git repositories with chosen files and dates, for pack and requirement tests."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(path: Path, *args: str, date: str | None = None) -> str:
    """Run git in `path` (with a fixed date when given) and return stdout."""
    env = {**os.environ, **ENV}
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def make_repo(path: Path, commits: list[tuple[str, dict[str, str | None]]]) -> Path:
    """A git repository at `path` with one commit per (ISO date, files) item."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for date, files in commits:
        for name, text in files.items():
            target = path / name
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        git(path, "add", "-A")
        git(path, "commit", "-q", "--allow-empty", "-m", f"Change at {date}", date=date)
    return path


def export_tar(package_root: Path, dest: Path) -> Path:
    """A .tar of a package folder, as a user would carry it on a USB stick."""
    with tarfile.open(dest, "w") as archive:
        archive.add(package_root, arcname=package_root.name)
    return dest


def repos_entries(repos_dir: Path) -> list[str]:
    """Everything in repos/, hidden entries included."""
    return sorted(p.name for p in repos_dir.iterdir())


# A pyproject.toml with every requirement form cra reads (extras, self-references,
# dependency groups with an include, a setuptools-scm version file).
PYPROJECT = """
[build-system]
requires = ["setuptools>=61", "setuptools-scm>=8"]
build-backend = "setuptools.build_meta"

[project]
name = "demo-pkg"
version = "1.0"
requires-python = ">=3.9"
dependencies = ["attrs>=22"]

[project.optional-dependencies]
test = ["pytest>=7", "demo-pkg[cov]"]
cov = ["coverage"]
docs = ["sphinx"]

[dependency-groups]
lint = ["ruff"]
test = ["hypothesis", {include-group = "lint"}]

[tool.setuptools_scm]
write_to = "src/demo_pkg/_version.py"

[tool.pytest.ini_options]
testpaths = ["tests"]
"""
