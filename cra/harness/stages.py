"""The commit funnel's stages, and the verdict they give a commit.

Stages, in order; the first one a commit fails decides its verdict and reason:
1. structural: merge commits, the root commit, commits that touch no Python file;
2. message: the subject scored as a task (see :mod:`cra.harness.messages`);
3. size: non-test files changed, non-test Python lines changed, added or removed binary
   files, and the patch size;
4. tests: the commit must add or modify a test module (:func:`is_test_module`, the
   rule validation uses to pick the tests it runs; test support such as `conftest.py`
   alone does not count) and change non-test Python source.

The patch size is computed for the commits that pass every cheaper check only (see
:mod:`cra.harness.gitscan`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cra.config import Config
from cra.harness.gitscan import (
    CommitFacts,
    FileChange,
    patch_sizes,
    pydriller_facts,
    scan_history,
)
from cra.harness.messages import score_subject
from cra.harness.testpaths import exercises_tests, is_test_path

STAGES = ("structural", "message", "size", "tests")


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


def split_files(
    files: Iterable[FileChange],
) -> tuple[list[FileChange], list[FileChange], list[FileChange]]:
    """A commit's files as (non-test Python source, tests, everything else)."""
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
    source, tests, other = split_files(facts.files)
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


def slow_verdicts(repo_dir: Path, limits: Limits) -> dict[str, Verdict]:
    """The naive path, for comparison and benchmarks: PyDriller materialises every
    commit's full diff, then the same :func:`judge` decides."""
    from pydriller import Repository

    verdicts: dict[str, Verdict] = {}
    for commit in Repository(str(repo_dir)).traverse_commits():
        facts, patch = pydriller_facts(commit)
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
