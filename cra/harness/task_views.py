"""Looking at the tasks `raw.db` holds: one line per task with its latest verdict, and the
lookups (a repository, a task id) that refuse an unknown name, saying which exist."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from cra.db.outcomes import RecordedOutcome, latest_validations
from cra.db.repos import repo_names
from cra.db.tasks import TaskListing, task_ids_like, task_listings
from cra.errors import NotFound, UsageError
from cra.harness.verdicts import VERDICTS

NOT_VALIDATED = "not_validated"
"""The `--verdict` that picks the tasks no validation has judged yet."""
VERDICT_FILTERS = (*VERDICTS, NOT_VALIDATED)


@dataclass(frozen=True)
class TaskLine:
    """One task as `cra harness tasks list` shows it. `verdict` is its latest validation's
    (None: never validated); `gold_files` counts the gold a planning run computed, else
    the non-test source files the commit changes (`gold_computed` says which)."""

    task_id: str
    repo: str
    authored_at: str
    verdict: str | None
    fail_to_pass: int
    gold_files: int
    gold_computed: bool
    title: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready line."""
        return {
            "task_id": self.task_id,
            "repo": self.repo,
            "authored_at": self.authored_at,
            "verdict": self.verdict,
            "fail_to_pass": self.fail_to_pass,
            "gold_files": self.gold_files,
            "gold_computed": self.gold_computed,
            "title": self.title,
        }


def json_list(text: str | None) -> list[object]:
    """A JSON list as recorded (an empty list for anything else)."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def json_object(text: str | None) -> dict[str, object]:
    """A JSON object as recorded (an empty one for anything else)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def first_line(text: str) -> str:
    """The first non-empty line of `text`, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def require_repo(conn: sqlite3.Connection, repo: str) -> str:
    """`repo` when `raw.db` knows it; NotFound naming the repositories it knows."""
    known = repo_names(conn)
    if repo not in known:
        raise NotFound(
            f"no repository {repo!r} in raw.db",
            hint=(f"known: {', '.join(known)}" if known else "none recorded yet")
            + "; mine one with `cra harness mine --repo NAME`",
        )
    return repo


def require_task(conn: sqlite3.Connection, task_id: str) -> TaskListing:
    """The task `task_id`; NotFound naming a few ids that look like it."""
    found = task_listings(conn, task_id=task_id)
    if found:
        return found[0]
    repo = task_id.partition("@")[0]
    near = task_ids_like(conn, task_id) or task_ids_like(conn, f"{repo}@")
    raise NotFound(
        f"no task {task_id!r} in raw.db",
        hint=(f"known ones include: {', '.join(near)}; " if near else "")
        + "task ids look like REPO@SHA12; `cra harness tasks list` shows them",
    )


def check_verdict(verdict: str | None) -> str | None:
    """`verdict` when it is a known verdict (or `not_validated`); UsageError otherwise."""
    if verdict is not None and verdict not in VERDICT_FILTERS:
        raise UsageError(
            f"unknown verdict {verdict!r}", hint=f"known: {', '.join(VERDICT_FILTERS)}"
        )
    return verdict


def list_tasks(
    conn: sqlite3.Connection,
    *,
    repo: str | None = None,
    verdict: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[TaskLine]:
    """The tasks (of `repo`, with latest verdict `verdict`, authored on or after `since`),
    oldest commit first, at most `limit` of them."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    check_verdict(verdict)
    if repo is not None:
        require_repo(conn, repo)
    latest = {o.task_id: o for o in latest_validations(conn, repo)}
    since_ts = None if since is None else int(since.timestamp())
    lines = []
    for task in task_listings(conn, repo=repo, since_ts=since_ts):
        line = _line(task, latest.get(task.task_id))
        if verdict is None or (line.verdict or NOT_VALIDATED) == verdict:
            lines.append(line)
        if limit is not None and len(lines) >= limit:
            break
    return lines


def _line(task: TaskListing, latest: RecordedOutcome | None) -> TaskLine:
    gold = json_list(task.gold_files)
    files = gold or json_list(task.files_source)
    return TaskLine(
        task.task_id,
        task.repo,
        task.authored_at,
        None if latest is None else latest.verdict,
        0 if latest is None else len(json_list(latest.fail_to_pass)),
        len(files),
        bool(gold),
        first_line(task.task_text),
    )
