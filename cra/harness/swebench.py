"""Verified tasks as SWE-bench instances: the format, and `cra harness export`.

An instance is one JSON object per line with SWE-bench's keys: `base_commit` is the
task's parent commit, `patch` its change to everything but its tests (the gold), and
`test_patch` its change to its tests (the split of :mod:`cra.harness.trees`).
`FAIL_TO_PASS` and `PASS_TO_PASS` are JSON-encoded lists of pytest node ids, as in
SWE-bench's published datasets (its `SWEbenchInstance` types them `str`; its loader also
takes plain lists, and so does :func:`test_list`). `version` is the environment (era) the
verdict was reached in. Keys starting with `cra_` carry where the task came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cra.db.outcomes import VerifiedTask, verified_tasks
from cra.fsutil import atomic_write_text, sha256_file
from cra.harness.trees import gold_patch, test_patch
from cra.repos.layout import require_package
from cra.workspace import Workspace

FORMAT = "swebench"
REQUIRED = (
    "instance_id",
    "base_commit",
    "patch",
    "test_patch",
    "problem_statement",
    "FAIL_TO_PASS",
    "PASS_TO_PASS",
)
"""The keys an instance must have for cra to import it."""


def instance_id_for(repo: str, sha: str) -> str:
    """The instance id of a task of cra: `REPO__SHA12` (SWE-bench's `OWNER__NAME-N`
    separator, the commit for the pull request number)."""
    return f"{repo}__{sha[:12]}"


def encode_tests(tests: list[str]) -> str:
    """A test list as SWE-bench's datasets hold it: a JSON-encoded list of strings."""
    return json.dumps(list(tests))


def test_list(value: object) -> list[str] | None:
    """A FAIL_TO_PASS or PASS_TO_PASS value as a list of test ids (a JSON-encoded list
    or a list, as SWE-bench's loader takes them); None when it is neither."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        return None
    return list(value)


def _json_list(text: str) -> list[str]:
    value = json.loads(text or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []


def _env_id(details: str) -> str:
    try:
        data = json.loads(details or "{}")
    except ValueError:
        return ""
    return str(data.get("env_id") or "") if isinstance(data, dict) else ""


def instance_of(task: VerifiedTask, repo_dir: Path) -> dict[str, object]:
    """The SWE-bench instance of a verified task of the package cloned at `repo_dir`."""
    parent = task.parent_sha or ""
    era = _env_id(task.details)
    return {
        "instance_id": instance_id_for(task.repo, task.sha),
        "repo": task.repo,
        "base_commit": parent,
        "patch": gold_patch(repo_dir, parent, task.sha),
        "test_patch": test_patch(repo_dir, parent, task.sha),
        "problem_statement": task.task_text,
        "hints_text": "",
        "created_at": task.authored_at,
        "version": era,
        "environment_setup_commit": parent,
        "FAIL_TO_PASS": encode_tests(_json_list(task.fail_to_pass)),
        "PASS_TO_PASS": encode_tests(_json_list(task.pass_to_pass)),
        "cra_task_id": task.task_id,
        "cra_repo": task.repo,
        "cra_commit": task.sha,
        "cra_era": era,
        "cra_isolation": task.isolation,
        "cra_flaky": _json_list(task.flaky),
        "cra_validated_at": task.validated_at,
    }


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the file, its sha256, and how many instances per repository."""

    path: Path
    sha256: str
    instances: int
    repos: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "format": FORMAT,
            "path": str(self.path),
            "sha256": self.sha256,
            "instances": self.instances,
            "repos": dict(self.repos),
        }


def export_swebench(
    workspace: Workspace,
    out: Path,
    *,
    repo: str | None = None,
    since_ts: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Exported:
    """Write every verified task (of `repo`, authored at or after `since_ts`) to `out` as
    SWE-bench instances, one per line, atomically (a temporary file, then a rename)."""
    with closing(workspace.raw_db()) as conn:
        tasks = verified_tasks(conn, repo, since_ts)
    if repo is not None:
        require_package(workspace.repos_dir, repo)
    lines: list[str] = []
    counts: dict[str, int] = {}
    for task in tasks:
        repo_dir = require_package(workspace.repos_dir, task.repo).repo_dir
        lines.append(json.dumps(instance_of(task, repo_dir), ensure_ascii=False))
        counts[task.repo] = counts.get(task.repo, 0) + 1
        if progress is not None:
            progress(task.task_id)
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return Exported(out, sha256_file(out), len(lines), counts)
