"""The verified yield of validation, per repository."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cra.db.outcomes import latest_verdict_counts
from cra.harness.verdicts import NOT_JUDGED


@dataclass(frozen=True)
class RepoYield:
    """A repository's validated tasks, each latest verdict's count, and the verified
    yield among tasks whose validation was not an infrastructure failure."""

    repo: str
    validated: int
    verdicts: dict[str, int]
    verified: int
    yield_pct: float | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready row."""
        return {
            "repo": self.repo,
            "validated": self.validated,
            "verdicts": dict(self.verdicts),
            "verified": self.verified,
            "yield_pct": self.yield_pct,
        }


def verified_yield(conn: sqlite3.Connection, repo: str | None = None) -> list[RepoYield]:
    """Per repository (or of `repo`): tasks validated, each verdict's count (latest
    verdict per task), and the verified yield among tasks whose validation was not an
    infrastructure failure."""
    per_repo: dict[str, dict[str, int]] = {}
    for row in latest_verdict_counts(conn, repo):
        per_repo.setdefault(row.repo, {})[row.verdict] = row.count
    return [_yield_of(name, verdicts) for name, verdicts in per_repo.items()]


def _yield_of(repo: str, verdicts: dict[str, int]) -> RepoYield:
    judged = sum(n for v, n in verdicts.items() if v not in NOT_JUDGED)
    verified = verdicts.get("verified", 0)
    pct = round(100 * verified / judged, 1) if judged else None
    return RepoYield(repo, sum(verdicts.values()), verdicts, verified, pct)
