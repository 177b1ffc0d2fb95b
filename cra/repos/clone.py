"""Cloning for `cra repo pack`: the source checked, and REF's history written into a
fresh repository that cra creates (only objects and refs travel from the source)."""

from __future__ import annotations

import re
from pathlib import Path

from cra.errors import UsageError
from cra.git import GitError, git


def is_url(source: str) -> bool:
    """Whether `source` is a URL (scheme or scp-like) rather than a local path."""
    return "://" in source or bool(re.match(r"^[\w.-]+@[\w.-]+:", source))


def check_source(source: str) -> str:
    """Return `source` as something git can clone; raise UsageError for a bad one."""
    if is_url(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(
            f"source {source} does not exist", hint="give a local git repository or a URL"
        )
    try:
        top = git("rev-parse", "--absolute-git-dir", cwd=path if path.is_dir() else path.parent)
    except GitError:
        raise UsageError(
            f"{source} is not a git repository", hint="give the path of a git clone, or a URL"
        ) from None
    if not top.strip():
        raise UsageError(f"{source} is not a git repository")
    try:
        git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=path)
    except GitError:
        branches = git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=path).split()
        if not branches:
            raise UsageError(
                f"{source} is an empty repository (no commits)",
                hint="commit something first, or pack another repository",
            ) from None
    return str(path.absolute())


def clone_ref(source: str, dest: Path, ref: str | None) -> tuple[str, str]:
    """Write REF's history from `source` into a fresh repository at `dest` that cra
    creates itself (no checkout); return (head sha, branch name).

    Only objects and refs travel: nothing of the source's `.git` (config, hooks,
    attributes, info, worktrees) is copied, and no remote, tag or hook is left pointing
    outside."""
    dest.mkdir()
    git("init", "-q", "--template=", str(dest), cwd=dest.parent)
    try:
        advertised = git("ls-remote", "--symref", source, "HEAD", cwd=dest)
        refspecs = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        git("fetch", "-q", "--no-tags", "--no-write-fetch-head", source, *refspecs, cwd=dest)
    except GitError as exc:
        raise UsageError(f"cannot clone {source}: {exc}", hint="check the path or URL") from None
    default = _advertised_head(advertised) or "main"
    want = ref or default
    sha = None
    is_branch = False
    for candidate in (f"refs/remotes/origin/{want}", f"refs/tags/{want}", want):
        try:
            sha = git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=dest)
            sha = sha.strip()
            is_branch = candidate.startswith("refs/remotes/")
            break
        except GitError:
            continue
    if not sha:
        if ref is None:
            raise UsageError(f"{source} is an empty repository (no commits)")
        refs = git(
            "for-each-ref", "--format=%(refname:short)", "refs/remotes", "refs/tags", cwd=dest
        ).split()
        shown = ", ".join(
            r.removeprefix("origin/") for r in refs if r not in ("origin", "origin/HEAD")
        )[:200]
        raise UsageError(f"unknown ref {ref!r} in {source}", hint=f"known refs: {shown}")
    # Keep a branch's name; a tag or a commit gets a branch called main.
    branch = want if is_branch and _valid_branch(want, dest) else "main"
    git("update-ref", f"refs/heads/{branch}", sha, cwd=dest)
    git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=dest)
    listed = git("for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes", cwd=dest)
    for other in listed.split():
        if other != f"refs/heads/{branch}":
            git("update-ref", "--no-deref", "-d", other, cwd=dest)
    for tag in git("tag", "--no-merged", sha, cwd=dest).split():
        git("tag", "-d", tag, cwd=dest)
    git("reflog", "expire", "--expire=now", "--all", cwd=dest)
    git("gc", "-q", "--prune=now", cwd=dest)
    return sha, branch


def _advertised_head(ls_remote: str) -> str | None:
    """The branch a `git ls-remote --symref SOURCE HEAD` listing says HEAD points at."""
    for line in ls_remote.splitlines():
        target, _, name = line.partition("\t")
        if name == "HEAD" and target.startswith("ref: refs/heads/"):
            return target.removeprefix("ref: refs/heads/")
    return None


def _valid_branch(name: str, cwd: Path) -> bool:
    try:
        git("check-ref-format", "--branch", name, cwd=cwd)
    except GitError:
        return False
    return True
