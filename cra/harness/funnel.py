"""The mining funnel of each repository, as recorded in `raw.db`."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cra.db.commits import FunnelCount, funnel_counts
from cra.harness.stages import STAGES


@dataclass(frozen=True)
class RepoFunnel:
    """A mined repository's funnel: commits in, dropped per stage with every reason
    (largest count first, so each stage's reasons add up to its drops),
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
    ranked = {s: dict(sorted(r.items(), key=_by_count)) for s, r in reasons.items()}
    pct = round(100 * qualified / commits_in, 2) if commits_in else 0.0
    return RepoFunnel(repo, commits_in, dropped, ranked, qualified, gone, pct)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]
