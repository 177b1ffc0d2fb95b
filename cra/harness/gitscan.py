"""Reading a repository's history for the commit funnel.

Speed: one `git log --raw --numstat` pass gives every commit's metadata and line
counts, which decide the funnel's stages 1–3 except the patch size. Only the survivors
get their full diff computed, once each, in one `git diff-tree --stdin` process parsed
exactly as PyDriller (GitPython) parses a diff. PyDriller itself is the reference:
:func:`pydriller_facts` reads a commit's `modified_files` the naive way (see
:func:`cra.harness.stages.slow_verdicts`), and a test holds both paths to the same
verdicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, cast

from cra.git import git_bytes


@dataclass(frozen=True)
class FileChange:
    """One file a commit changed: status (A, M, D, R, C, T), paths, line counts (None for
    a binary file)."""

    path: str
    old_path: str | None
    status: str
    added: int | None
    deleted: int | None

    @property
    def binary(self) -> bool:
        """Whether git saw the file as binary."""
        return self.added is None


@dataclass(frozen=True)
class CommitFacts:
    """What the funnel needs to know about a commit."""

    sha: str
    parents: tuple[str, ...]
    authored_ts: int
    authored_at: str
    author: str
    message: str
    files: tuple[FileChange, ...]

    @property
    def subject(self) -> str:
        """The first line of the message."""
        return self.message.strip().split("\n", 1)[0].strip()


LOG_FORMAT = "%x1eC%x1f%H%x1f%P%x1f%at%x1f%aI%x1f%an <%ae>%x1f%B%x1f"


def scan_history(repo_dir: Path) -> list[CommitFacts]:
    """Every commit reachable from HEAD with its changed files, oldest first (by author
    date), from one `git log` pass."""
    out = git_bytes(
        "log",
        "HEAD",
        "--no-color",
        "--raw",
        "--numstat",
        "-z",
        "-M",
        "--no-abbrev",
        f"--format={LOG_FORMAT}",
        cwd=repo_dir,
    )
    text = out.decode("utf-8", "replace")
    commits: list[CommitFacts] = []
    for chunk in text.split("\x1eC\x1f")[1:]:
        head, _, rest = chunk.partition("\x1f\x00")
        sha, parents, ts, iso, author, message = head.split("\x1f", 5)
        tokens = rest.lstrip("\n").split("\x00")
        status: dict[str, tuple[str, str | None]] = {}
        counts: dict[str, tuple[int | None, int | None]] = {}
        i = 0
        while i < len(tokens):
            token = tokens[i].lstrip("\n")
            if not token:
                i += 1
                continue
            if token.startswith(":"):
                kind = token.split(" ")[4][0]
                if kind in "RC":
                    status[tokens[i + 2]] = (kind, tokens[i + 1])
                    i += 3
                else:
                    status[tokens[i + 1]] = (kind, None)
                    i += 2
                continue
            added, deleted, path = token.split("\t", 2)
            if path == "":
                path = tokens[i + 2]
                i += 3
            else:
                i += 1
            counts[path] = (
                None if added == "-" else int(added),
                None if deleted == "-" else int(deleted),
            )
        files = tuple(
            FileChange(path, old, kind, *counts.get(path, (0, 0)))
            for path, (kind, old) in status.items()
        )
        commits.append(
            CommitFacts(sha, tuple(parents.split()), int(ts), iso, author, message, files)
        )
    commits.sort(key=lambda c: (c.authored_ts, c.sha))
    return commits


def patch_sizes(repo_dir: Path, shas: list[str]) -> dict[str, int]:
    """Full patch size (characters) of each commit in `shas`, one `git diff-tree` process
    for all of them.

    PyDriller's `ModifiedFile.diff` is GitPython's per-file diff text: what follows each
    file's header, decoded as UTF-8 ignoring errors. The same command (`diff-tree -r -p -M
    --full-index`), the same header grammar (GitPython's own `Diff.re_header`) and the same
    decoding give the same numbers without a process and a GitPython object per commit
    (a test pins equality with :func:`pydriller_patch_sizes`)."""
    if not shas:
        return {}
    from git.diff import Diff

    out = git_bytes(
        "diff-tree",
        "--stdin",
        "-r",
        "-p",
        "-M",
        "--full-index",
        "--abbrev=40",
        "--no-color",
        cwd=repo_dir,
        input=("\n".join(shas) + "\n").encode(),
    )
    # Each commit's patch follows a line holding just its sha; no diff line can be one.
    marks = list(re.finditer(rb"^([0-9a-f]{40})\n", out, re.MULTILINE))
    sizes = dict.fromkeys(shas, 0)
    for i, mark in enumerate(marks):
        chunk = out[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(out)]
        headers = list(Diff.re_header.finditer(chunk))
        sizes[mark.group(1).decode()] = sum(
            len(
                chunk[h.end() : headers[j + 1].start() if j + 1 < len(headers) else None].decode(
                    "utf-8", "ignore"
                )
            )
            for j, h in enumerate(headers)
        )
    return sizes


def pydriller_patch_sizes(repo_dir: Path, shas: list[str]) -> dict[str, int]:
    """Full patch size of each commit in `shas` through PyDriller (the reference for
    :func:`patch_sizes`): a GitPython diff per commit."""
    if not shas:
        return {}
    from pydriller import Repository

    sizes: dict[str, int] = {}
    for commit in Repository(str(repo_dir), only_commits=list(shas)).traverse_commits():
        sizes[commit.hash] = sum(len(f.diff or "") for f in commit.modified_files)
    return sizes


class _PyDrillerFile(Protocol):
    """The attributes of PyDriller's (untyped) ModifiedFile that the slow path reads."""

    diff: str | None
    added_lines: int
    deleted_lines: int
    change_type: object
    new_path: str | None
    old_path: str | None


class _PyDrillerAuthor(Protocol):
    """The attributes of PyDriller's (untyped) Developer that the slow path reads."""

    name: str
    email: str


class _PyDrillerCommit(Protocol):
    """The attributes of PyDriller's (untyped) Commit that the slow path reads."""

    hash: str
    parents: list[str]
    msg: str
    author: _PyDrillerAuthor
    author_date: datetime
    modified_files: list[_PyDrillerFile]


def pydriller_facts(commit: _PyDrillerCommit) -> tuple[CommitFacts, int]:
    """Facts and patch size of a PyDriller commit, from its full diffs."""
    from pydriller import ModificationType

    kinds = {
        ModificationType.ADD: "A",
        ModificationType.DELETE: "D",
        ModificationType.MODIFY: "M",
        ModificationType.RENAME: "R",
        ModificationType.COPY: "C",
    }
    files = []
    patch = 0
    for mf in commit.modified_files:
        diff = mf.diff or ""
        patch += len(diff)
        binary = diff.startswith("Binary files") or (
            diff == ""
            and mf.added_lines == 0
            and mf.deleted_lines == 0
            and mf.change_type in (ModificationType.ADD, ModificationType.DELETE)
            and not (mf.new_path or mf.old_path or "").endswith(".py")
        )
        status = kinds.get(mf.change_type, "M")
        # A deletion has an old path only, every other change a new path.
        path = cast(str, mf.new_path if status != "D" else mf.old_path)
        files.append(
            FileChange(
                path,
                mf.old_path if status in ("R", "C") else None,
                status,
                None if binary else mf.added_lines,
                None if binary else mf.deleted_lines,
            )
        )
    author = f"{commit.author.name} <{commit.author.email}>"
    date = commit.author_date
    facts = CommitFacts(
        commit.hash,
        tuple(commit.parents),
        int(date.timestamp()),
        date.isoformat(),
        author,
        commit.msg,
        tuple(files),
    )
    return facts, patch
