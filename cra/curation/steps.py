"""Curation as a pipeline of named steps, each counting the rows it drops and why.

A step takes the rows on their way (:class:`Splits`) and returns what it keeps; its
counter says how many rows each reason dropped (datatrove's `stat_update`), so the
funnel can always be printed. :func:`run_steps` applies them in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cra.curation.dedup import cap_domains, deduplicate, effective_cap, stable_order
from cra.curation.rows import Row

Progress = Callable[[str], None]
Group = tuple[str, str]


@dataclass(frozen=True)
class Splits:
    """Rows on their way through curation: `pending` until the time split, then `eval`
    and `train`; `eval_tasks` are the eval side's tasks at the split (never replayed)."""

    pending: tuple[Row, ...] = ()
    eval: tuple[Row, ...] = ()
    train: tuple[Row, ...] = ()
    eval_tasks: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        """How many rows there are, on either side or pending."""
        return len(self.pending) + len(self.eval) + len(self.train)


@dataclass(frozen=True)
class Drops:
    """One line of the funnel: a reason and how many rows it dropped, optionally per
    group or domain (`by` names which)."""

    reason: str
    dropped: int
    by: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The line as the dataset card records it."""
        line: dict[str, Any] = {"filter": self.reason, "dropped": self.dropped}
        if self.by is not None:
            line[self.by] = self.counts
        return line


class Step:
    """A named step. `reasons` are declared up front (counted even when they drop
    nothing); `by` names what the per-reason detail counts are keyed by."""

    name = "step"
    by: str | None = None

    def __init__(self, *reasons: str) -> None:
        self.dropped: Counter[str] = Counter(dict.fromkeys(reasons, 0))
        self.detail: dict[str, Counter[str]] = {r: Counter() for r in reasons}

    def drop(self, reason: str, key: str | None = None, n: int = 1) -> None:
        """Count `n` rows dropped for `reason` (and for `key`, a group or domain)."""
        self.dropped[reason] += n
        if key is not None:
            self.detail.setdefault(reason, Counter())[key] += n

    def announce(self, splits: Splits) -> str | None:
        """What to say before the step runs on `splits` (None: nothing)."""
        return None

    def run(self, splits: Splits) -> Splits:
        """The rows this step keeps."""
        raise NotImplementedError

    def funnel(self) -> list[Drops]:
        """The step's lines of the funnel, one per reason."""
        return [
            Drops(reason, n, self.by, dict(self.detail.get(reason, {})))
            for reason, n in self.dropped.items()
        ]


def run_steps(steps: Iterable[Step], splits: Splits, say: Progress) -> Splits:
    """Apply `steps` in order, saying what each announces."""
    for step in steps:
        message = step.announce(splits)
        if message is not None:
            say(message)
        splits = step.run(splits)
    return splits


def _by_time(row: Row) -> tuple[int, str, str, str]:
    return (row.authored_ts, row.task_id, row.adapter, row.technique)


TrainedKey = tuple[str, str, str]


class LeaveToReplay(Step):
    """Rows whose (adapter, technique, task) an earlier dataset trained on are left to
    replay: data accumulates, it is never repeated."""

    name = "leave to replay"
    by = "by_dataset"
    REASON = "already in an earlier dataset (replayed instead)"

    def __init__(self, trained: Mapping[TrainedKey, str]) -> None:
        super().__init__(self.REASON)
        self.trained = trained

    @property
    def by_dataset(self) -> dict[str, int]:
        """How many rows were left out, per earlier dataset holding them."""
        return dict(self.detail.get(self.REASON, {}))

    def run(self, splits: Splits) -> Splits:
        """The pending rows no earlier dataset (`trained` maps each row's key to the
        first that holds it) trained on."""
        kept = []
        for row in splits.pending:
            earlier = self.trained.get((row.adapter, row.technique, row.task_id))
            if earlier is None:
                kept.append(row)
            else:
                self.drop(self.REASON, earlier)
        return replace(splits, pending=tuple(kept))


class TimeSplit(Step):
    """A task authored at or after the boundary is eval, before it train."""

    name = "time split"

    def __init__(self, boundary: int) -> None:
        super().__init__()
        self.boundary = boundary

    def run(self, splits: Splits) -> Splits:
        """The pending rows on their side of the boundary."""
        held = tuple(r for r in splits.pending if r.authored_ts >= self.boundary)
        train = tuple(r for r in splits.pending if r.authored_ts < self.boundary)
        tasks = frozenset(r.task_id for r in held)
        return Splits(eval=held, train=train, eval_tasks=tasks)


class Deduplicate(Step):
    """Exact and near-duplicates, within and across the splits (see :mod:`.dedup`)."""

    name = "deduplicate"
    by = "by_group"
    EXACT = "exact duplicate"
    CONTAMINATION = "train row duplicating an eval row"

    def __init__(self, *, threshold: float, num_perm: int, shingle_words: int) -> None:
        self.near = f"near-duplicate (MinHash LSH, Jaccard >= {threshold})"
        super().__init__(self.EXACT, self.near, self.CONTAMINATION)
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_words = shingle_words

    def announce(self, splits: Splits) -> str | None:
        """How many rows are compared."""
        return f"deduplicating {splits.size} rows"

    def run(self, splits: Splits) -> Splits:
        """What stays once duplicates are dropped (eval rows kept first)."""
        held, train, stats = deduplicate(
            splits.eval,
            splits.train,
            threshold=self.threshold,
            num_perm=self.num_perm,
            shingle_words=self.shingle_words,
        )
        for reason, counts in (
            (self.EXACT, stats.exact),
            (self.near, stats.near),
            (self.CONTAMINATION, stats.eval_contamination),
        ):
            for group, n in counts.items():
                self.drop(reason, group, n)
        return replace(splits, eval=tuple(held), train=tuple(train))


class DomainCap(Step):
    """At most `setting` of each (adapter, technique) group's rows from one domain, per
    split; equal shares where a group has too few domains (with a warning)."""

    name = "domain cap"
    by = "by_domain"

    def __init__(self, setting: float) -> None:
        self.reason = f"domain cap ({setting:.0%})"
        super().__init__(self.reason)
        self.setting = setting
        self.effective: dict[str, float] = {}
        self.warnings: list[str] = []

    def run(self, splits: Splits) -> Splits:
        """Both splits capped."""
        return replace(
            splits, eval=self.cap("eval", splits.eval), train=self.cap("train", splits.train)
        )

    def cap(self, split: str, rows: Sequence[Row]) -> tuple[Row, ...]:
        """The rows of `split` that the cap keeps, oldest first."""
        kept: list[Row] = []
        for group in sorted({r.group for r in rows}):
            members = [r for r in rows if r.group == group]
            domains = {r.domain for r in members}
            cap = effective_cap(self.setting, len(domains))
            name = f"{split} {'/'.join(group)}"
            self.effective[name] = cap
            if cap > self.setting:
                self.warnings.append(
                    f"{name}: only {len(domains)} domain(s), the {self.setting:.0%} cap needs "
                    f"{round(1 / self.setting)}; capped at equal shares ({cap:.0%}) instead"
                )
            members, dropped = cap_domains(members, cap)
            for domain, n in dropped.items():
                self.drop(self.reason, domain, n)
            kept.extend(members)
        return tuple(sorted(kept, key=_by_time))


class DrawReplay(Step):
    """`share` of the train rows drawn from earlier datasets' train rows (older than the
    boundary, not an eval task, not a duplicate), then capped with the fresh rows: the
    cap holds on what is written."""

    name = "replay"

    def __init__(
        self,
        pool: Sequence[Row],
        *,
        groups: set[Group],
        boundary: int,
        share: float,
        salt: str,
        cap: DomainCap,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.groups = groups
        self.boundary = boundary
        self.share = share
        self.salt = salt
        self.domain_cap = cap
        self.sources: list[str] = []

    def announce(self, splits: Splits) -> str | None:
        """Whether replay rows are drawn."""
        return "drawing replay rows" if self.pool else None

    def run(self, splits: Splits) -> Splits:
        """The train split with the replay rows drawn for it."""
        if not self.pool:
            return splits
        drawn = self._draw(splits)
        self.sources = sorted({r.record["meta"]["replay_of"] for r in drawn})
        if not drawn:
            return splits
        return replace(splits, train=self.domain_cap.cap("train", splits.train + tuple(drawn)))

    def _draw(self, splits: Splits) -> list[Row]:
        keys = {r.content_key for r in splits.train + splits.eval}
        by_group: dict[Group, list[Row]] = {}
        seen: set[str] = set()
        for row in self.pool:
            if row.group not in self.groups:
                self.drop("adapter not in this plan")
            elif row.authored_ts >= self.boundary or row.task_id in splits.eval_tasks:
                self.drop("at or after the holdout boundary")
            elif row.content_key in keys or row.content_key in seen:
                self.drop("duplicate")
            else:
                seen.add(row.content_key)
                by_group.setdefault(row.group, []).append(row)
        drawn: list[Row] = []
        for group, members in sorted(by_group.items()):
            fresh = sum(1 for r in splits.train if r.group == group)
            want = round(self.share * fresh / (1 - self.share))
            members.sort(key=lambda r: stable_order(r, self.salt))
            drawn.extend(members[:want])
        return drawn
