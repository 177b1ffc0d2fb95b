"""The funnel commit by commit: the stage each recorded commit reached and, for a dropped
one, the reason mining recorded (see :mod:`cra.harness.stages`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cra.db.commits import CommitRecord, commit_records
from cra.errors import UsageError
from cra.harness.stages import STAGES
from cra.harness.task_views import require_repo
from cra.harness.tasks import mined_repo_id

QUALIFIED = "qualified"
COMMIT_STAGES = (*STAGES, QUALIFIED)
"""What `--stage` takes: a stage that drops commits, or `qualified` (passed every one)."""


@dataclass(frozen=True)
class CommitLine:
    """One recorded commit: `stage` is the stage that dropped it, or `qualified`;
    `gone` when a re-pack took it out of the package's history."""

    sha: str
    authored_at: str
    subject: str
    stage: str
    reason: str | None
    gone: bool

    @property
    def dropped(self) -> bool:
        """Whether a stage of the funnel dropped the commit."""
        return self.stage != QUALIFIED

    def as_dict(self) -> dict[str, object]:
        """JSON-ready line."""
        return {
            "sha": self.sha,
            "authored_at": self.authored_at,
            "subject": self.subject,
            "stage": self.stage,
            "dropped": self.dropped,
            "reason": self.reason,
            "gone": self.gone,
        }


def _line(record: CommitRecord) -> CommitLine:
    return CommitLine(
        record.sha,
        record.authored_at,
        record.subject,
        record.stage,
        record.reason,
        record.gone_at is not None,
    )


def commit_lines(
    conn: sqlite3.Connection,
    repo: str,
    *,
    stage: str | None = None,
    dropped: bool = False,
    reason: str | None = None,
) -> list[CommitLine]:
    """`repo`'s recorded commits, oldest first: only those that ended at `stage`, only
    dropped ones, only those whose reason contains `reason` (any case), as asked.
    NotFound for a repository `raw.db` does not know or has not mined."""
    if stage is not None and stage not in COMMIT_STAGES:
        raise UsageError(f"unknown stage {stage!r}", hint=f"known: {', '.join(COMMIT_STAGES)}")
    if dropped and stage == QUALIFIED:
        raise UsageError("--dropped and --stage qualified select nothing together")
    if reason is not None and not reason.strip():
        raise UsageError("--reason is empty", hint="give a word of the reason, e.g. 'merge'")
    repo_id = mined_repo_id(conn, require_repo(conn, repo))
    records = commit_records(conn, repo_id, stage=stage, dropped=dropped, reason=reason)
    return [_line(r) for r in records]
