"""`cra harness mine`: a repository's history through the commit funnel into `raw.db`.

Stages, in order; the first one a commit fails decides its verdict and reason:
1. structural: merge commits, the root commit, commits that touch no Python file;
2. message: the subject scored as a task (see :mod:`cra.harness.messages`);
3. size: non-test files changed, non-test Python lines changed, added or removed binary
   files, and the patch size;
4. tests: the commit must add or modify a test module (:func:`is_test_module`, the
   rule validation uses to pick the tests it runs; test support such as `conftest.py`
   alone does not count) and change non-test Python source.

Every commit's row also records its subject's conventional-commit type (`feat`, `fix`,
`docs`, ... or NULL; see :func:`cra.harness.messages.conventional_type`).

Speed: one `git log --raw --numstat` pass gives every commit's metadata and line
counts, which decide stages 1–3 except the patch size. Only the survivors get their
full diff computed, once each, in one `git diff-tree --stdin` process parsed exactly as
PyDriller (GitPython) parses a diff. PyDriller itself is the reference: the naive path
(:func:`slow_verdicts`) reads every commit's `modified_files`, and a test holds both
paths to the same verdicts.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, cast

from cra.config import Config
from cra.db import transaction
from cra.db.commits import (
    FunnelCount,
    MinedCommit,
    commit_stages,
    funnel_counts,
    known_shas,
    upsert_commits,
)
from cra.fsutil import now_iso
from cra.git import git_bytes
from cra.harness.messages import clean_task_text, conventional_type, score_subject
from cra.harness.testpaths import exercises_tests, is_test_path
from cra.repos.layout import register_repo, require_package
from cra.workspace import Workspace

STAGES = ("structural", "message", "size", "tests")


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


@dataclass(frozen=True)
class Limits:
    """Size bounds of stage 3, from `[mine]` in cra.toml."""

    max_source_files: int = 4
    max_source_lines: int = 199
    max_patch_chars: int = 10_000

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        """The limits a workspace configures."""
        return cls(
            config.settings.mine.max_source_files,
            config.settings.mine.max_source_lines,
            config.settings.mine.max_patch_chars,
        )


@dataclass(frozen=True)
class Verdict:
    """The funnel's decision on a commit."""

    stage: str  # the stage that decided: one of STAGES, or "qualified"
    reason: str | None
    message_score: float | None

    @property
    def qualified(self) -> bool:
        """Whether the commit passed every stage."""
        return self.stage == "qualified"


def _split(
    files: Iterable[FileChange],
) -> tuple[list[FileChange], list[FileChange], list[FileChange]]:
    source, tests, other = [], [], []
    for f in files:
        if is_test_path(f.path):
            tests.append(f)
        elif f.path.endswith(".py"):
            source.append(f)
        else:
            other.append(f)
    return source, tests, other


def judge(facts: CommitFacts, limits: Limits, patch_chars: Callable[[], int]) -> Verdict:
    """Run the funnel on one commit. `patch_chars` is called only when stages 1–3's cheap
    checks pass, so the full diff is computed for survivors only."""
    if len(facts.parents) > 1:
        return Verdict("structural", "merge commit", None)
    if not facts.parents:
        return Verdict("structural", "root commit", None)
    if not any(f.path.endswith(".py") or (f.old_path or "").endswith(".py") for f in facts.files):
        return Verdict("structural", "no Python file changed", None)
    message = score_subject(facts.subject, author=facts.author)
    if not message.ok:
        return Verdict("message", message.reason, message.score)
    source, tests, other = _split(facts.files)
    non_test = source + other
    if any(f.binary and f.status in ("A", "D") for f in facts.files):
        return Verdict("size", "adds or removes a binary file", message.score)
    if len(non_test) > limits.max_source_files:
        return Verdict(
            "size", f"{len(non_test)} non-test files > {limits.max_source_files}", message.score
        )
    lines = sum((f.added or 0) + (f.deleted or 0) for f in source)
    if lines > limits.max_source_lines:
        return Verdict(
            "size", f"{lines} non-test Python lines > {limits.max_source_lines}", message.score
        )
    if not tests:
        return Verdict("tests", "changes no test file", message.score)
    kept = [f.path for f in tests if f.status != "D"]
    if not kept:
        return Verdict("tests", "only deletes test files", message.score)
    if not exercises_tests(kept):
        return Verdict("tests", "changes test support outside a test directory only", message.score)
    if not source:
        return Verdict("tests", "changes no non-test Python source", message.score)
    chars = patch_chars()
    if chars > limits.max_patch_chars:
        return Verdict("size", f"patch of {chars} chars > {limits.max_patch_chars}", message.score)
    return Verdict("qualified", None, message.score)


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


@dataclass
class MineResult:
    """What a mining run did, and the funnel it produced."""

    repo: str
    seen: int
    new: int
    rescored: int
    dropped: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    qualified: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "repo": self.repo,
            "commits_in": self.seen,
            "new": self.new,
            "rescored": self.rescored,
            "dropped": {s: self.dropped.get(s, 0) for s in STAGES},
            "reasons": {s: dict(self.reasons.get(s, Counter()).most_common(5)) for s in STAGES},
            "qualified": self.qualified,
            "yield_pct": round(100 * self.qualified / self.seen, 2) if self.seen else 0.0,
        }


def _in_range(facts: CommitFacts, since: datetime | None, until: datetime | None) -> bool:
    if since is not None and facts.authored_ts < since.timestamp():
        return False
    return not (until is not None and facts.authored_ts > until.timestamp())


def mine_history(
    conn: sqlite3.Connection,
    repo_id: int,
    repo_name: str,
    repo_dir: Path,
    limits: Limits,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    rescore: bool = False,
) -> MineResult:
    """Mine `repo_dir` into `commits`: new commits only, or all of them with `rescore`."""
    history = [c for c in scan_history(repo_dir) if _in_range(c, since, until)]
    known = known_shas(conn, repo_id)
    todo = history if rescore else [c for c in history if c.sha not in known]
    # Cheap pass: decide everything the metadata can decide; note who needs a diff.
    need_diff = []
    for facts in todo:
        probe = judge(facts, limits, patch_chars=lambda: -1)
        if probe.qualified:
            need_diff.append(facts.sha)
    sizes = patch_sizes(repo_dir, need_diff)
    result = MineResult(repo_name, len(history), 0, 0)
    verdicts = [
        (facts, judge(facts, limits, patch_chars=functools.partial(sizes.__getitem__, facts.sha)))
        for facts in todo
    ]
    with transaction(conn):
        record_commits(conn, repo_id, verdicts)
    for facts in todo:
        if facts.sha in known:
            result.rescored += 1
        else:
            result.new += 1
    _fill_funnel(conn, repo_id, result, [c.sha for c in history])
    return result


def record_commits(
    conn: sqlite3.Connection, repo_id: int, verdicts: Iterable[tuple[CommitFacts, Verdict]]
) -> None:
    """Write (or re-judge) commits and their funnel verdicts; the caller holds the
    transaction. A commit already recorded keeps its row and gets the new verdict."""
    now = now_iso()
    upsert_commits(conn, (_mined(repo_id, facts, verdict, now) for facts, verdict in verdicts))


def _mined(repo_id: int, facts: CommitFacts, verdict: Verdict, now: str) -> MinedCommit:
    source, tests, other = _split(facts.files)
    return MinedCommit(
        repo_id,
        facts.sha,
        facts.parents[0] if facts.parents else None,
        facts.authored_at,
        facts.authored_ts,
        facts.author,
        facts.subject,
        clean_task_text(facts.message) if verdict.qualified else None,
        verdict.message_score,
        json.dumps([f.path for f in source]),
        json.dumps([f.path for f in tests]),
        json.dumps([f.path for f in other]),
        sum(f.added or 0 for f in facts.files),
        sum(f.deleted or 0 for f in facts.files),
        "qualified" if verdict.qualified else "dropped",
        verdict.stage,
        verdict.reason,
        conventional_type(facts.subject),
        now,
    )


def _fill_funnel(
    conn: sqlite3.Connection, repo_id: int, result: MineResult, shas: list[str]
) -> None:
    wanted = set(shas)
    for row in commit_stages(conn, repo_id):
        if row.sha not in wanted:
            continue
        if row.stage == "qualified":
            result.qualified += 1
        else:
            result.dropped[row.stage] += 1
            result.reasons.setdefault(row.stage, Counter())[row.reason or "?"] += 1


def mine_repo(
    workspace: Workspace,
    name: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    rescore: bool = False,
) -> MineResult:
    """Mine the repo package `name` of `workspace` (see :func:`mine_history`)."""
    package = require_package(workspace, name)
    domain = source_url = None
    if package.manifest_path.is_file():
        try:
            manifest = json.loads(package.manifest_path.read_text(encoding="utf-8"))
            domain = manifest.get("domain")
            source_url = (manifest.get("source") or {}).get("url")
        except (OSError, ValueError, AttributeError):
            pass  # the manifest is checked by `cra repo verify`; mining needs only the clone
    with closing(workspace.raw_db()) as conn:
        repo_id = register_repo(conn, name, domain=domain, source_url=source_url)
        return mine_history(
            conn,
            repo_id,
            name,
            package.repo_dir,
            Limits.from_config(workspace.config),
            since=since,
            until=until,
            rescore=rescore,
        )


@dataclass(frozen=True)
class RepoFunnel:
    """A mined repository's funnel: commits in, dropped per stage with the top reasons,
    qualifying out, yield %, and `gone`: recorded commits the package's history no
    longer has (see :mod:`cra.harness.reconcile`), outside the funnel."""

    repo: str
    commits_in: int
    dropped: dict[str, int]
    reasons: dict[str, dict[str, int]]
    qualified: int
    gone: int
    yield_pct: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready funnel."""
        return {
            "repo": self.repo,
            "commits_in": self.commits_in,
            "dropped": dict(self.dropped),
            "reasons": {s: dict(r) for s, r in self.reasons.items()},
            "qualified": self.qualified,
            "gone": self.gone,
            "yield_pct": self.yield_pct,
        }


def funnel(conn: sqlite3.Connection, repo: str | None = None) -> list[RepoFunnel]:
    """The funnel of each mined repository (or of `repo`); see :class:`RepoFunnel`."""
    counts: dict[str, list[FunnelCount]] = {}
    for row in funnel_counts(conn, repo):
        counts.setdefault(row.repo, []).append(row)
    return [_funnel_of(name, rows) for name, rows in counts.items()]


def _funnel_of(repo: str, rows: list[FunnelCount]) -> RepoFunnel:
    dropped = {s: 0 for s in STAGES}
    reasons: dict[str, dict[str, int]] = {s: {} for s in STAGES}
    commits_in = qualified = gone = 0
    for row in rows:
        if row.stage == "gone":
            gone += row.count
            continue
        commits_in += row.count
        if row.stage == "qualified":
            qualified += row.count
        else:
            dropped[row.stage] += row.count
            reasons[row.stage][row.reason or "?"] = row.count
    top = {s: dict(sorted(r.items(), key=_by_count)[:3]) for s, r in reasons.items()}
    pct = round(100 * qualified / commits_in, 2) if commits_in else 0.0
    return RepoFunnel(repo, commits_in, dropped, top, qualified, gone, pct)


def _by_count(item: tuple[str, int]) -> int:
    return -item[1]


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


def _pydriller_facts(commit: _PyDrillerCommit) -> tuple[CommitFacts, int]:
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


def slow_verdicts(repo_dir: Path, limits: Limits) -> dict[str, Verdict]:
    """The naive path, for comparison and benchmarks: PyDriller materialises every
    commit's full diff, then the same :func:`judge` decides."""
    from pydriller import Repository

    verdicts: dict[str, Verdict] = {}
    for commit in Repository(str(repo_dir)).traverse_commits():
        facts, patch = _pydriller_facts(commit)
        verdicts[facts.sha] = judge(facts, limits, patch_chars=functools.partial(int, patch))
    return verdicts


def fast_verdicts(repo_dir: Path, limits: Limits) -> dict[str, Verdict]:
    """The fast path without the database: one log pass, full diffs for survivors only."""
    history = scan_history(repo_dir)
    survivors = [f.sha for f in history if judge(f, limits, patch_chars=lambda: -1).qualified]
    sizes = patch_sizes(repo_dir, survivors)
    return {
        f.sha: judge(f, limits, patch_chars=functools.partial(sizes.__getitem__, f.sha))
        for f in history
    }
