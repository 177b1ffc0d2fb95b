"""The loop's strategy and the meta step's rules that rewrite it.

A strategy says which adapters the train step leaves out (paused; the others are what
the training plan plans), which domains of repositories the next pivot takes last, and
the ranker's epochs (None: the `[ranker]` setting). Every `meta_every` cycles the loop
calls :func:`rewrite` on the last cycles and those before them; the journal's `meta`
event records the old and the new strategy and why, so a resumed loop reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cra.adapters.names import name_kind
from cra.db.loop import LoopCycle


@dataclass(frozen=True)
class Strategy:
    """What the loop does differently from its defaults (the defaults: nothing)."""

    paused: tuple[str, ...] = ()
    back_domains: tuple[str, ...] = ()
    ranker_epochs: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view, as the `meta` event records it."""
        return {
            "paused": list(self.paused),
            "back_domains": list(self.back_domains),
            "ranker_epochs": self.ranker_epochs,
        }

    @property
    def text(self) -> str:
        """One line: what differs from the defaults."""
        parts = []
        if self.paused:
            parts.append("paused " + ", ".join(self.paused))
        if self.back_domains:
            parts.append("domains last " + ", ".join(self.back_domains))
        if self.ranker_epochs is not None:
            parts.append(f"ranker epochs {self.ranker_epochs:g}")
        return "; ".join(parts) or "default (train what the plan plans, queue as listed)"


def strategy_from(record: Mapping[str, Any]) -> Strategy:
    """The strategy a `meta` event recorded (see :meth:`Strategy.as_dict`)."""
    epochs = record.get("ranker_epochs")
    return Strategy(
        paused=tuple(record.get("paused") or ()),
        back_domains=tuple(record.get("back_domains") or ()),
        ranker_epochs=None if epochs is None else float(epochs),
    )


@dataclass(frozen=True)
class EpochBounds:
    """How far the meta step may move the ranker's epochs: one `step` at a time, never
    over `most`; `base` is the `[ranker]` epochs it starts from."""

    base: float
    step: float
    most: float


@dataclass(frozen=True)
class Rewrite:
    """The new strategy and one line per change (or why nothing changed)."""

    strategy: Strategy
    why: tuple[str, ...]


def _names(cycles: Sequence[LoopCycle], key: str) -> set[str]:
    return {str(ref).split("@")[0] for c in cycles for ref in c.summary.get(key) or ()}


def _promoted(cycles: Sequence[LoopCycle]) -> int:
    return sum(c.promoted for c in cycles)


def pause_rule(old: Strategy, last: Sequence[LoopCycle]) -> tuple[tuple[str, ...], list[str]]:
    """Adapters trained in the window but never promoted while another was are paused;
    when none was promoted, paused ones train again (so never every adapter is paused)."""
    trained, promoted = _names(last, "candidates"), _names(last, "promoted")
    if not promoted:
        if not old.paused:
            return old.paused, []
        back = ", ".join(old.paused)
        return (), [f"resumed {back}: no adapter was promoted in cycles {_span(last)}"]
    stalled = sorted(trained - promoted - set(old.paused))
    why = [
        f"paused {name}: no promotion in cycles {_span(last)} while "
        f"{', '.join(sorted(promoted))} was promoted"
        for name in stalled
    ]
    return tuple(sorted({*old.paused, *stalled} - promoted)), why


def epochs_rule(
    old: Strategy, last: Sequence[LoopCycle], before: Sequence[LoopCycle], bounds: EpochBounds
) -> tuple[float | None, list[str]]:
    """Nothing promoted in the window nor in the one before, with the ranker trained:
    its epochs go up one step, never over the bound."""
    ranker = any(name_kind(n) == "ranker" for n in _names(last, "candidates"))
    if not ranker or not before or _promoted(last) or _promoted(before):
        return old.ranker_epochs, []
    current = bounds.base if old.ranker_epochs is None else old.ranker_epochs
    raised = min(current + bounds.step, bounds.most)
    if raised <= current:
        return old.ranker_epochs, [
            f"ranker epochs kept at {current:g}: the bound is {bounds.most:g}"
        ]
    return raised, [
        f"ranker epochs {current:g} -> {raised:g}: nothing promoted in cycles "
        f"{_span(before)} nor {_span(last)}"
    ]


def _yield(cycle: LoopCycle) -> int | None:
    counts = [cycle.summary.get(k) for k in ("new_commits", "new_tasks")]
    known = [int(c) for c in counts if c is not None]
    return sum(known) if known else None


def domain_rule(
    old: Strategy, last: Sequence[LoopCycle], domains: Mapping[str, str]
) -> tuple[tuple[str, ...], list[str]]:
    """A repository whose cycles in the window added no commits and no tasks and improved
    nothing sends its domain to the back of the pivot queue."""
    back, why = list(old.back_domains), []
    for repo in sorted({c.repo for c in last if c.repo}):
        mine = [c for c in last if c.repo == repo]
        yields = [_yield(c) for c in mine]
        if None in yields or any(yields) or _names(mine, "improved"):
            continue
        domain = domains.get(repo)
        if domain is not None and domain not in back:
            back.append(domain)
            why.append(f"domain {domain} last: {repo} added no commits or tasks, improved nothing")
    return tuple(back), why


def rewrite(
    old: Strategy,
    last: Sequence[LoopCycle],
    before: Sequence[LoopCycle],
    bounds: EpochBounds,
    domains: Mapping[str, str],
) -> Rewrite:
    """The strategy after comparing the `last` cycles with those `before` them (see the
    rules above); `domains` names each package's domain."""
    paused, why = pause_rule(old, last)
    epochs, more = epochs_rule(old, last, before, bounds)
    back, most = domain_rule(old, last, domains)
    new = replace(old, paused=paused, ranker_epochs=epochs, back_domains=back)
    reasons = [*why, *more, *most]
    if new == old:
        promoted = _promoted(last)
        reasons.append(
            f"strategy kept: {promoted} promotion(s) in cycles {_span(last)}, "
            f"{_promoted(before)} before"
        )
    return Rewrite(new, tuple(reasons))


def _span(cycles: Sequence[LoopCycle]) -> str:
    numbers = [c.number for c in cycles]
    if not numbers:
        return "-"
    return f"{numbers[0]}" if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"
