"""`cra harness mine`: a repository's history through the commit funnel into `raw.db`.

The history is read by :mod:`cra.harness.gitscan` and judged by the stages of
:mod:`cra.harness.stages`; the funnel it leaves is reported by :mod:`cra.harness.funnel`.

Every commit's row also records its subject's conventional-commit type (`feat`, `fix`,
`docs`, ... or NULL; see :func:`cra.harness.messages.conventional_type`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cra.db import transaction
from cra.db.commits import MinedCommit, commit_stages, known_shas, upsert_commits
from cra.fsutil import now_iso
from cra.harness.gitscan import CommitFacts, patch_sizes, scan_history
from cra.harness.messages import clean_task_text, conventional_type
from cra.harness.stages import STAGES, Limits, Verdict, judge, split_files
from cra.repos.layout import register_repo, require_package
from cra.workspace import Workspace


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
            # Every reason, largest first: a stage's reasons add up to its drops.
            "reasons": {s: dict(self.reasons.get(s, Counter()).most_common()) for s in STAGES},
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
    source, tests, other = split_files(facts.files)
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
    package = require_package(workspace.repos_dir, name)
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
