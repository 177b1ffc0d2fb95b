"""Eras of a history and the environment each one gets.

The history is bucketed by author date into calendar eras; each era's requirements are
read at its last commit and pinned (see `cra.repos.resolve` for the bounds), and every pin
is fetched as a wheel. An era that fails is retried with later bounds; one that fails every
time is recorded as unusable with its reason, and the pack goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import canonicalize_name

from cra.errors import CraError, UsageError
from cra.git import git
from cra.repos.fetch import WheelFetcher
from cra.repos.manifest import Environment
from cra.repos.requirements import RequirementSet
from cra.repos.resolve import (
    MAX_ATTEMPTS,
    Resolver,
    blamed,
    later_bounds,
    provenance,
    stamp,
    tools_date,
)
from cra.sandbox import SandboxUnavailable

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

    def bounds(self, i: int) -> Bounds:
        """The bounds to try for era `i`: its own end, later eras' ends, then none."""
        era = self.eras[i]
        own = era.until if era.until < self.now and self.bounded else None
        later = [e.until for e in self.eras[i + 1 :]]
        return Bounds(later_bounds(own, later, self.now), tools_date(self.resolver.python))

    def environment(self, i: int, reqs: RequirementSet) -> Environment:
        """Era `i`'s environment: the first bounds that resolve and fetch, else an
        unusable environment that says why. A package whose build fails gets a later
        bound of its own; any other failure moves the whole era's bound on."""
        era = self.eras[i]
        bounds = self.bounds(i)
        tried: list[str] = []
        self.say(f"resolving era {era.id} ({era.commits} commits) at {era.last_sha[:12]}")
        while len(tried) < MAX_ATTEMPTS:
            try:
                pins, files = self.try_bounds(era, reqs, bounds)
            except SandboxUnavailable:
                raise  # no later bound helps: an sdist cannot be built anywhere safe
            except CraError as exc:
                error = explain(exc, reqs)
                tried.append(f"{bounds.describe()}: failed: {error}")
                self.say(f"  era {era.id}: {tried[-1][:300]}")
                if not bounds.relax(failed_builds(str(exc))):
                    break
                continue
            note = (f"applied {bounds.describe()}",) if tried else ()
            return self.made(i, reqs, bounds.bound, pins, files, (*tried, *note))
        reason = f"no bound resolved and fetched; last error: {tried[-1]}"
        return self.made(i, reqs, None, [], (), tuple(tried), reason)

    def try_bounds(
        self, era: Era, reqs: RequirementSet, bounds: Bounds
    ) -> tuple[list[str], tuple[str, ...]]:
        """Pin and fetch the era under `bounds`; raise CraError on either failing."""
        where = self.resolver.workdir / era.id
        pins = self.resolver.pin(reqs, bounds.bound, where, bounds.per_package())
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


@dataclass
class Bounds:
    """The date bounds of one attempt: the era's, and later ones for single packages.

    A package whose sdist fails to build is moved straight to the interpreter's tools
    date (a release that old never saw the interpreter, so an older one will not build
    either), then to no bound; any other failure moves the whole era to a later bound.
    """

    steps: list[tuple[datetime | None, str]]
    floor: datetime | None = None
    level: int = 0
    packages: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def bound(self) -> datetime | None:
        """The bound applied to every package without one of its own."""
        return self.steps[self.level][0]

    def per_package(self) -> dict[str, datetime | None]:
        """Packages given a later bound than the era's (None: no bound)."""
        return dict(self.packages)

    def relax(self, names: set[str]) -> bool:
        """Move the named packages on (to the tools date, then to no bound), or, with none
        named (or none left to move), the whole era; False when nothing is left to try."""
        moved = False
        for name in names:
            current = self.packages.get(name, self.bound)
            if current is None:
                continue  # already unbounded
            below_floor = self.floor is not None and current < self.floor
            self.packages[name] = self.floor if below_floor else None
            moved = True
        if moved:
            return True
        if self.level + 1 >= len(self.steps):
            return False
        self.level += 1
        bound = self.bound
        self.packages = {
            n: b for n, b in self.packages.items() if bound is not None and (b is None or b > bound)
        }
        return True

    def describe(self) -> str:
        """The bounds in words: the era's, and each package's own."""
        bound, why = self.steps[self.level]
        text = f"{stamp(bound) if bound else 'no bound'} ({why})"
        for name, moment in sorted(self.packages.items()):
            text += f", {name} {stamp(moment) if moment else 'unbounded'}"
        return text


def failed_builds(message: str) -> set[str]:
    """The packages whose sdist failed to build, named in a resolver or builder message."""
    if "build" not in message.lower():
        return set()
    pins = re.findall(r"([A-Za-z0-9][A-Za-z0-9._-]*)==[0-9][A-Za-z0-9.+!-]*", message)
    return {canonicalize_name(name) for name in pins}


def explain(exc: CraError, reqs: RequirementSet) -> str:
    """A failed attempt in one line: the resolver's or builder's message, and where each
    requirement it names came from (the project's files, or cra itself)."""
    message = str(exc)
    named = blamed(message, reqs.requirements)
    if named:
        message += f" [requirements named: {provenance(reqs, named)}]"
    return message
