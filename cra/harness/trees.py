"""The trees a validation runs on: a commit's tree, its parent with the commit's tests
applied, and the commit's gold patch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cra.db.commits import Commit
from cra.fsutil import extract_tree
from cra.git import archive_tree, git
from cra.harness.testpaths import exercised_modules, is_test_module, is_test_path


def export_tree(repo_dir: Path, sha: str, dest: Path, paths: Sequence[str] = ()) -> None:
    """Write the tree of `sha` (or only `paths` of it) into `dest`, no git metadata; blobs
    as stored, no attribute (filter, export-ignore, export-subst) applies."""
    extract_tree(archive_tree(repo_dir, sha, paths), dest)


def changed_test_paths(repo_dir: Path, parent: str, sha: str) -> tuple[list[str], list[str]]:
    """The test paths (any file under a test dir, or a test module) the commit changes:
    (present at the commit, deleted by it)."""
    out = git("diff-tree", "-r", "-z", "--no-renames", "--name-status", parent, sha, cwd=repo_dir)
    fields = out.split("\0")
    present: list[str] = []
    deleted: list[str] = []
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if not path or not is_test_path(path):
            continue
        (deleted if status == "D" else present).append(path)
    return sorted(present), sorted(deleted)


def runnable_tests(paths: Sequence[str]) -> list[str]:
    """The test modules among `paths` that pytest should be pointed at: the same rule
    that lets a commit through mining's tests stage (:func:`is_test_module`)."""
    return [path for path in paths if is_test_module(path)]


def before_tree(repo_dir: Path, commit: Commit, dest: Path) -> list[str]:
    """The parent with the commit's test files applied, in `dest`; return the tests to run."""
    present, deleted = changed_test_paths(repo_dir, commit.parent, commit.sha)
    export_tree(repo_dir, commit.parent, dest)
    if present:
        export_tree(repo_dir, commit.sha, dest, present)
    for path in deleted:
        (dest / path).unlink(missing_ok=True)
    tests = runnable_tests(present)
    if tests or not present:
        return tests
    listing = git("ls-tree", "-r", "--name-only", "--full-tree", commit.sha, cwd=repo_dir)
    return exercised_modules(present, listing.splitlines())


def test_patch(repo_dir: Path, parent: str, sha: str) -> str:
    """The commit's change to its tests only (the complement of :func:`gold_patch`), as a
    patch `git apply` takes."""
    out = git("diff-tree", "-r", "-z", "--no-renames", "--name-only", parent, sha, cwd=repo_dir)
    paths = [f":(literal){p}" for p in out.split("\0") if p and is_test_path(p)]
    if not paths:
        return ""
    return git("diff", "--binary", "--no-renames", parent, sha, "--", *paths, cwd=repo_dir)


def gold_patch(repo_dir: Path, parent: str, sha: str) -> str:
    """The commit's change to everything but its tests, as a patch `git apply` takes."""
    out = git("diff-tree", "-r", "-z", "--no-renames", "--name-only", parent, sha, cwd=repo_dir)
    paths = [p for p in out.split("\0") if p and not is_test_path(p)]
    if not paths:
        return ""
    return git("diff", "--binary", "--no-renames", parent, sha, "--", *paths, cwd=repo_dir)


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree: what a commit without a parent is compared with."""


def commit_diff(repo_dir: Path, parent: str | None, sha: str) -> tuple[str, str]:
    """The commit's change as text, split: (everything but its tests, its tests)."""
    base = parent or EMPTY_TREE
    out = git("diff-tree", "-r", "-z", "--no-renames", "--name-only", base, sha, cwd=repo_dir)
    paths = [p for p in out.split("\0") if p]

    def diff(selected: list[str]) -> str:
        if not selected:
            return ""
        specs = [f":(literal){p}" for p in selected]
        return git("diff", "--no-renames", base, sha, "--", *specs, cwd=repo_dir)

    return (
        diff([p for p in paths if not is_test_path(p)]),
        diff([p for p in paths if is_test_path(p)]),
    )
