"""Eras of a history and the environment each one gets.

The history is bucketed by author date into calendar eras; each era's requirements are
read at its last commit and pinned (see `cra.repos.resolve` for the bounds), and every pin
is fetched as a wheel. An era that fails is retried with later bounds; one that fails every
time is recorded as unusable with its reason, and the pack goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cra.errors import CraError, UsageError
from cra.git import git
from cra.repos.fetch import WheelFetcher
from cra.repos.manifest import Environment
from cra.repos.requirements import RequirementSet
from cra.repos.resolve import Attempt, Resolver, later_bounds, named_packages, provenance

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Era:
    """A bucket of history: commits authored in [start, until), and its last commit."""

    id: str
    start: datetime
    until: datetime
    last_sha: str
    commits: int


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _from_index(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def split_eras(repo_dir: Path, head: str, *, months: int, single: bool = False) -> list[Era]:
    """Bucket REF's history by author date into eras of `months` calendar months."""
    if months <= 0:
        raise UsageError(f"--era-months must be greater than 0, got {months}")
    lines = git("log", "--topo-order", "--format=%H %at", head, cwd=repo_dir).split("\n")
    commits = [
        (sha, datetime.fromtimestamp(int(ts), UTC))
        for sha, ts in (line.split() for line in lines if line.strip())
    ]
    if single:
        newest = max(commits, key=lambda c: c[1])
        start = min(c[1] for c in commits)
        return [Era("all", start, newest[1], head, len(commits))]
    buckets: dict[int, list[tuple[str, datetime]]] = {}
    for sha, when in commits:
        buckets.setdefault(_month_index(when) // months, []).append((sha, when))
    eras = []
    for key in sorted(buckets):
        members = buckets[key]
        start = _from_index(key * months)
        until = _from_index((key + 1) * months)
        last = max(members, key=lambda c: c[1])[0]  # ties: log order puts the newest first
        era_id = str(start.year) if months == 12 else start.strftime("%Y-%m")
        eras.append(Era(era_id, start, until, last, len(members)))
    return eras


def merge_environments(envs: list[Environment]) -> list[Environment]:
    """Merge neighbouring environments whose pins are identical."""
    merged: list[Environment] = []
    for env in envs:
        prev = merged[-1] if merged else None
        if prev is not None and prev.requirements == env.requirements:
            merged[-1] = replace(
                env,
                id=f"{prev.id.split('..')[0]}..{env.id}",
                start=prev.start,
                sources=tuple(dict.fromkeys([*prev.sources, *env.sources])),
                attempts=tuple(dict.fromkeys([*prev.attempts, *env.attempts])),
            )
        else:
            merged.append(env)
    return merged


@dataclass
class EraPacker:
    """Pins and fetches one environment per era, retrying later bounds on failure."""

    resolver: Resolver
    fetcher: WheelFetcher
    eras: list[Era]
    now: datetime
    bounded: bool
    find_links: Path | None
    say: Echo

    def date_bound(self, bound: datetime | None) -> str:
        """How the date bound was applied, in words, for the manifest."""
        if bound is None:
            return "none: the era reaches the present"
        if not self.resolver.use_index:
            return "not applied: --find-links files carry no upload date"
        if self.find_links is not None:
            return "applied to the index; --find-links files carry no upload date"
        return "applied"

    def bounds(self, i: int) -> list[tuple[datetime | None, str]]:
        """The bounds to try for era `i`: its own end, later eras' ends, then none."""
        era = self.eras[i]
        own = era.until if era.until < self.now and self.bounded else None
        later = [e.until for e in self.eras[i + 1 :]]
        return later_bounds(own, later, self.now)

    def environment(self, i: int, reqs: RequirementSet) -> Environment:
        """Era `i`'s environment: the first bound that resolves and fetches, else an
        unusable environment that says why."""
        era = self.eras[i]
        tried: list[Attempt] = []
        for bound, why in self.bounds(i):
            self.say(f"resolving era {era.id} ({era.commits} commits) at {era.last_sha[:12]}")
            try:
                pins, files = self.try_bound(era, reqs, bound)
            except CraError as exc:
                tried.append(Attempt(bound, why, explain(exc, reqs)))
                self.say(f"  era {era.id}: {tried[-1].describe()[:300]}")
                continue
            note = () if not tried else (f"applied {Attempt(bound, why).describe()}",)
            return self.made(i, reqs, bound, pins, files, (*[a.describe() for a in tried], *note))
        reason = f"no bound resolved and fetched; last error: {tried[-1].error}"
        return self.made(i, reqs, None, [], (), tuple(a.describe() for a in tried), reason)

    def try_bound(
        self, era: Era, reqs: RequirementSet, bound: datetime | None
    ) -> tuple[list[str], tuple[str, ...]]:
        """Pin and fetch the era under `bound`; raise CraError on either failing."""
        where = self.resolver.workdir / era.id
        pins = self.resolver.pin(reqs, bound, where)
        files = tuple(self.fetcher.fetch(pin) for pin in pins)
        return pins, files

    def made(
        self,
        i: int,
        reqs: RequirementSet,
        bound: datetime | None,
        pins: list[str],
        files: tuple[str, ...],
        attempts: tuple[str, ...],
        unusable: str | None = None,
    ) -> Environment:
        """The manifest entry of era `i`."""
        era = self.eras[i]
        applied = bound if self.resolver.use_index else None
        return Environment(
            id=era.id,
            start=None if i == 0 else era.start.date().isoformat(),
            until=None if i == len(self.eras) - 1 else era.until.date().isoformat(),
            resolved_at=era.last_sha,
            exclude_newer=applied.isoformat() if applied is not None else None,
            date_bound="none: unusable" if unusable else self.date_bound(bound),
            requirements=tuple(pins),
            wheels=tuple(sorted(set(files))),
            sources=tuple(reqs.sources),
            unusable=unusable,
            attempts=attempts,
        )


def explain(exc: CraError, reqs: RequirementSet) -> str:
    """A failed attempt in one line: the resolver's or builder's message, and where each
    requirement it names came from (the project's files, or cra itself)."""
    message = str(exc)
    named = named_packages(message, reqs)
    if named:
        message += f" [requirements named: {provenance(reqs, named)}]"
    return message
