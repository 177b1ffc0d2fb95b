"""`commits`: every mined commit with its funnel verdict, and whether history lost it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from datetime import datetime


@dataclass(frozen=True)
class Commit:
    """A qualifying commit as mining recorded it."""

    id: int
    sha: str
    parent: str
    authored_at: str
    task_text: str
    files_source: tuple[str, ...]
    files_tests: tuple[str, ...]


@dataclass(frozen=True)
class MinedCommit:
    """One commit's row as mining writes it (the fields in the table's column order)."""

    repo_id: int
    sha: str
    parent_sha: str | None
    authored_at: str
    authored_ts: int
    author: str
    subject: str
    task_text: str | None
    message_score: float | None
    files_source: str
    files_tests: str
    files_other: str
    lines_added: int
    lines_deleted: int
    verdict: str
    stage: str
    reason: str | None
    conventional_type: str | None
    mined_at: str


@dataclass(frozen=True)
class CommitStage:
    """Where a recorded commit stopped in the funnel."""

    sha: str
    stage: str
    reason: str | None


@dataclass(frozen=True)
class FunnelCount:
    """How many of a repository's commits share a stage (`gone` when history lost them)
    and a reason."""

    repo: str
    stage: str
    reason: str | None
    count: int


@dataclass(frozen=True)
class Presence:
    """A recorded commit and when history lost it (None while it is still there)."""

    id: int
    sha: str
    gone_at: str | None


def has_commits(conn: sqlite3.Connection, repo_id: int) -> bool:
    """Whether any commit of the repository is recorded (it has been mined)."""
    sql = "SELECT 1 FROM commits WHERE repo_id = ? LIMIT 1"
    return conn.execute(sql, (repo_id,)).fetchone() is not None


def commit_id(conn: sqlite3.Connection, repo_id: int, sha: str) -> int | None:
    """The id of the repository's recorded commit `sha`, or None when it is not recorded."""
    sql = "SELECT id FROM commits WHERE repo_id = ? AND sha = ?"
    row = conn.execute(sql, (repo_id, sha)).fetchone()
    return None if row is None else int(row[0])


def known_shas(conn: sqlite3.Connection, repo_id: int) -> set[str]:
    """The shas of the repository's recorded commits."""
    rows = conn.execute("SELECT sha FROM commits WHERE repo_id = ?", (repo_id,))
    return {row[0] for row in rows}


def upsert_commits(conn: sqlite3.Connection, commits: Iterable[MinedCommit]) -> None:
    """Write commits; one already recorded keeps its row and gets the new verdict. The
    caller holds the transaction."""
    for commit in commits:
        conn.execute(
            "INSERT INTO commits (repo_id, sha, parent_sha, authored_at, authored_ts, "
            "author, subject, task_text, message_score, files_source, files_tests, "
            "files_other, lines_added, lines_deleted, verdict, stage, reason, "
            "conventional_type, mined_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (repo_id, sha) DO UPDATE SET task_text = excluded.task_text, "
            "message_score = excluded.message_score, verdict = excluded.verdict, "
            "stage = excluded.stage, reason = excluded.reason, "
            "conventional_type = excluded.conventional_type, mined_at = excluded.mined_at",
            astuple(commit),
        )


def commit_stages(conn: sqlite3.Connection, repo_id: int) -> list[CommitStage]:
    """The funnel stage and reason of each of the repository's recorded commits."""
    sql = "SELECT sha, stage, reason FROM commits WHERE repo_id = ?"
    return [CommitStage(r[0], r[1], r[2]) for r in conn.execute(sql, (repo_id,))]


def funnel_counts(conn: sqlite3.Connection, repo: str | None) -> list[FunnelCount]:
    """Commit counts per repository (or of `repo`), stage and reason, by repository name."""
    rows = conn.execute(
        "SELECT r.name, CASE WHEN c.gone_at IS NULL THEN c.stage ELSE 'gone' END, c.reason, "
        "count(*) AS n FROM commits c "
        "JOIN repos r ON r.id = c.repo_id WHERE (? IS NULL OR r.name = ?) "
        "GROUP BY 1, 2, 3 ORDER BY r.name",
        (repo, repo),
    ).fetchall()
    return [FunnelCount(r[0], r[1], r[2], int(r[3])) for r in rows]


def presence(conn: sqlite3.Connection, repo_id: int) -> list[Presence]:
    """Each of the repository's recorded commits and when history lost it."""
    sql = "SELECT id, sha, gone_at FROM commits WHERE repo_id = ?"
    return [Presence(r["id"], r["sha"], r["gone_at"]) for r in conn.execute(sql, (repo_id,))]


def set_gone(conn: sqlite3.Connection, gone: list[int], back: list[int], now: str) -> None:
    """Mark commits `gone` as lost from history at `now` and `back` as present again;
    the caller holds the transaction."""
    conn.executemany("UPDATE commits SET gone_at = ? WHERE id = ?", [(now, i) for i in gone])
    conn.executemany("UPDATE commits SET gone_at = NULL WHERE id = ?", [(i,) for i in back])


def qualified_commits(
    conn: sqlite3.Connection, repo_id: int, since: datetime | None
) -> list[Commit]:
    """The repository's qualifying commits, oldest first (none gone from its history)."""
    rows = conn.execute(
        "SELECT id, sha, parent_sha, authored_at, authored_ts, task_text, files_source, "
        "files_tests FROM commits WHERE repo_id = ? AND verdict = 'qualified' "
        "AND gone_at IS NULL ORDER BY authored_ts, id",
        (repo_id,),
    ).fetchall()
    return [commit_of(r) for r in rows if since is None or r["authored_ts"] >= since.timestamp()]


def untested_commits(conn: sqlite3.Connection, repo_id: int) -> list[Commit]:
    """The repository's commits dropped only at the last (`tests`) stage that still change
    a non-test source file, oldest first (none gone from history): their message and size
    passed, so their changed files are valid gold for a ranker. Mining keeps no task text
    for a dropped commit, so `task_text` is empty."""
    rows = conn.execute(
        "SELECT id, sha, parent_sha, authored_at, authored_ts, '' AS task_text, files_source, "
        "files_tests FROM commits WHERE repo_id = ? AND verdict = 'dropped' "
        "AND stage = 'tests' AND files_source <> '[]' AND gone_at IS NULL "
        "ORDER BY authored_ts, id",
        (repo_id,),
    ).fetchall()
    return [commit_of(r) for r in rows]


@dataclass(frozen=True)
class CommitRecord:
    """A recorded commit with the funnel's decision on it."""

    sha: str
    authored_at: str
    subject: str
    verdict: str
    stage: str
    reason: str | None
    gone_at: str | None


def commit_records(
    conn: sqlite3.Connection,
    repo_id: int,
    *,
    stage: str | None = None,
    dropped: bool = False,
    reason: str | None = None,
) -> list[CommitRecord]:
    """The repository's recorded commits, oldest first: only those decided at `stage`,
    only dropped ones, only those whose reason contains `reason` (any case), as asked."""
    rows = conn.execute(
        "SELECT sha, authored_at, subject, verdict, stage, reason, gone_at FROM commits "
        "WHERE repo_id = :repo AND (:stage IS NULL OR stage = :stage) "
        "AND (:dropped = 0 OR verdict = 'dropped') "
        "AND (:reason IS NULL OR instr(lower(coalesce(reason, '')), lower(:reason)) > 0) "
        "ORDER BY authored_ts, id",
        {"repo": repo_id, "stage": stage, "dropped": int(dropped), "reason": reason},
    ).fetchall()
    return [CommitRecord(*row) for row in rows]


def commit_of(row: sqlite3.Row) -> Commit:
    """A :class:`Commit` from a row with the `commits` columns it needs."""
    return Commit(
        row["id"],
        row["sha"],
        row["parent_sha"],
        row["authored_at"],
        row["task_text"] or "",
        tuple(json.loads(row["files_source"])),
        tuple(json.loads(row["files_tests"])),
    )
