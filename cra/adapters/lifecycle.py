"""Promote, roll back and check adapter versions: every move is one transaction, an
event with its reason, and (with a server running) a swap the server follows.

- promote: allowed only when the candidate has eval results on the same holdout as the
  active version (or, with none active, as the base model) and no primary metric drops
  by more than the noise floor; `force` skips the gate and is recorded.
- rollback: the version that was active before the current one becomes active again.
- check: the active version's live metrics against those it was promoted on; a drop
  beyond the noise floor rolls back automatically and records why.

The registry pointer moves inside the serving swap's `switch`, so a version the server
fails to load never becomes active. Two concurrent moves cannot both win: the switch
re-reads the active version under the write lock and refuses when it changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cra.adapters.live import live_scores
from cra.adapters.metrics import bootstrap_floor, compare, mean_metrics, primary_metrics
from cra.adapters.names import name_kind
from cra.adapters.registry import (
    Event,
    Version,
    active_version,
    add_event,
    events,
    get_version,
    move_active,
    parse_ref,
    parse_versioned,
    reject_candidate,
    verify_files,
)
from cra.config import AdaptersSettings
from cra.db import transaction
from cra.errors import CraError, UsageError
from cra.serving.server import swap
from cra.workspace import Workspace

Echo = Callable[[str], None]


class PromotionRefused(CraError, ValueError):
    """The gate found no comparable eval, or a regression."""


@dataclass
class Move:
    """What a promote, rollback or check did."""

    name: str
    action: str
    to_version: int | None
    from_version: int | None
    reason: str
    forced: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def _switch(
    open_raw: Callable[[], sqlite3.Connection],
    name: str,
    *,
    expect_active: int | None,
    to_version: int | None,
    demoted_status: str,
    event: str,
    reason: str,
    forced: bool,
    details: dict[str, Any],
) -> Callable[[], None]:
    def switch() -> None:
        with closing(open_raw()) as conn, transaction(conn):
            now_active = move_active(
                conn,
                name,
                expect_active=expect_active,
                to_version=to_version,
                demoted_status=demoted_status,
            )
            add_event(
                conn,
                name,
                to_version,
                event,
                from_version=now_active,
                reason=reason,
                forced=forced,
                details=details,
            )

    return switch


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _swap(
    workspace: Workspace,
    name: str,
    new: Version | None,
    old: Version | None,
    switch: Callable[[], None],
    echo: Echo | None,
) -> None:
    """Move the pointer: through the server's swap for LoRA adapters; directly for a
    ranker, which no server loads (it is scored in-process by whoever reads the pointer)."""
    if name_kind(name) == "ranker":
        switch()
        return
    swap(
        workspace,
        new=new.served() if new else None,
        old=old.served() if old else None,
        switch=switch,
        echo=echo,
    )


def _gate(settings: AdaptersSettings, cand: Version, active: Version | None) -> dict[str, Any]:
    """The comparison the gate decides on; raise PromotionRefused when it cannot compare."""
    if not cand.eval_metrics:
        raise PromotionRefused(
            f"{cand.ref} has no eval results", hint=f"run `cra adapter eval {cand.ref}` first"
        )
    if active is None:
        evals = cand.eval_metrics
        key = sorted(evals, key=lambda k: evals[k].get("evaluated_at", ""), reverse=True)[0]
        result = cand.eval_metrics[key]
        baseline = {
            "metrics": result.get("base_metrics", {}),
            "per_example": result.get("base_per_example", {}),
        }
        against = "the base model"
    else:
        common = sorted(set(cand.eval_metrics) & set(active.eval_metrics))
        if not common:
            holdouts = ", ".join(sorted(cand.eval_metrics))
            raise PromotionRefused(
                f"{cand.ref} and the active {active.ref} have no eval on the same holdout",
                hint=f"run `cra adapter eval {active.ref} --dataset ID` for {cand.ref}'s "
                f"holdout ({holdouts})",
            )
        own = [k for k in common if k.startswith(f"{cand.dataset_id}:")]
        key = (own or common)[-1]
        result = cand.eval_metrics[key]
        baseline = active.eval_metrics[key]
        against = active.ref
    comparison = compare(
        cand.name,
        result,
        baseline,
        floor=settings.noise_floor,
        samples=settings.bootstrap,
        quantile=settings.bootstrap_quantile,
    )
    return {
        "holdout": key,
        "against": against,
        **comparison,
        "promoted_metrics": result.get("metrics", {}),
    }


def promote(
    workspace: Workspace,
    ref: str,
    *,
    force: bool = False,
    reason: str | None = None,
    echo: Echo | None = None,
) -> Move:
    """Make `NAME@vN` the single active version of NAME, if the gate allows (see module)."""
    name, number = parse_versioned(ref)
    with closing(workspace.raw_db()) as conn:
        cand = get_version(conn, workspace.root, name, number)
        active = active_version(conn, workspace.root, name)
    if cand.status == "active":
        raise UsageError(f"{cand.ref} is already the active version")
    verify_files(cand)
    try:
        details = _gate(workspace.config.settings.adapters, cand, active)
    except PromotionRefused:
        if not force:
            raise
        details = {"gate": "skipped: no comparable eval"}
    regressions = details.get("regressions", [])
    if regressions and not force:
        lines = ", ".join(
            f"{m} {details['metrics'][m]['candidate']:.3f} vs "
            f"{details['metrics'][m]['baseline']:.3f} "
            f"(floor {details['metrics'][m]['noise_floor']:.3f})"
            for m in regressions
        )
        why = f"regresses against {details['against']} on {details['holdout']}: {lines}"
        with closing(workspace.raw_db()) as conn, transaction(conn):
            reject_candidate(conn, name, number)
            before = active.version if active else None
            add_event(
                conn, name, number, "rejected", from_version=before, reason=why, details=details
            )
        raise PromotionRefused(f"{cand.ref} {why}", hint="use --force to promote it anyway")
    passed = (
        f"no primary metric regresses against {details.get('against')} on {details.get('holdout')}"
    )
    text = reason or ("forced" if force else passed)
    switch = _switch(
        workspace.raw_db,
        name,
        expect_active=active.version if active else None,
        to_version=number,
        demoted_status="retired",
        event="promoted",
        reason=text,
        forced=force,
        details=details,
    )
    _swap(workspace, name, cand, active, switch, echo)
    return Move(name, "promoted", number, active.version if active else None, text, force, details)


def _decision(workspace: Workspace, ref: str, status: str, event: str) -> Event | None:
    """The registry event that left `NAME@vN` in `status`, when that is its status and its
    latest promotion, rollback to it or rejection is an `event`; otherwise None."""
    name, number = parse_versioned(ref)
    with closing(workspace.raw_db()) as conn:
        if get_version(conn, workspace.root, name, number).status != status:
            return None
        history = events(conn, name)
    kinds = ("promoted", "rolled_back", "rejected")
    last = next((e for e in reversed(history) if e.version == number and e.event in kinds), None)
    return last if last is not None and last.event == event else None


def promotion(workspace: Workspace, ref: str) -> Move | None:
    """The promotion that made `NAME@vN` the active version, when it still is (what a
    promote that already happened did, for a caller re-running it); otherwise None."""
    event = _decision(workspace, ref, "active", "promoted")
    if event is None:
        return None
    name, number = parse_versioned(ref)
    reason = event.reason or ""
    return Move(name, "promoted", number, event.from_version, reason, event.forced, event.details)


def rejection(workspace: Workspace, ref: str) -> PromotionRefused | None:
    """The refusal with which the gate rejected `NAME@vN`, when that is what last became of
    it (what a promote that already happened raised, for a caller re-running it)."""
    event = _decision(workspace, ref, "rejected", "rejected")
    if event is None:
        return None
    name, number = parse_versioned(ref)
    return PromotionRefused(
        f"{name}@v{number} {event.reason}", hint="use --force to promote it anyway"
    )


def automatic_rollback(workspace: Workspace, name: str, since: str) -> Move | None:
    """The latest automatic rollback (a `check`'s) of `name` recorded at or after the ISO
    time `since` (what a check that already happened did, for a caller re-running it);
    None when there is none."""
    start = datetime.fromisoformat(since)
    with closing(workspace.raw_db()) as conn:
        history = events(conn, name)
    last = next(
        (
            e
            for e in reversed(history)
            if e.event == "rolled_back"
            and e.details.get("automatic") is True
            and datetime.fromisoformat(e.created_at) >= start
        ),
        None,
    )
    if last is None:
        return None
    reason = last.reason or ""
    return Move(name, "rolled_back", last.version, last.from_version, reason, False, last.details)


def previous_active(conn: sqlite3.Connection, name: str, current: int) -> int | None:
    """The version that was active before `current` was promoted (None: none was).

    Only promotions count, so successive rollbacks walk back down the promotion chain
    instead of toggling between the last two versions."""
    for event in reversed(events(conn, name)):
        if event.version == current and event.event == "promoted":
            return event.from_version
    return None


def rollback(
    workspace: Workspace,
    name: str,
    *,
    to: int | None = None,
    reason: str | None = None,
    automatic: bool = False,
    details: dict[str, Any] | None = None,
    echo: Echo | None = None,
) -> Move:
    """Make the previously active version of `name` (or `to`) active again: a registry
    update and an event, nothing retrained or deleted."""
    name, named_version = parse_ref(name)
    if named_version is not None:
        raise UsageError(
            f"rollback takes an adapter name, not {name}@v{named_version}",
            hint=f"write `cra adapter rollback {name} --to v{named_version}`",
        )
    with closing(workspace.raw_db()) as conn:
        active = active_version(conn, workspace.root, name)
        target_number = to
        if to is None:
            if active is None:
                raise UsageError(
                    f"{name} has no active version to roll back", hint="name one with --to vK"
                )
            target_number = previous_active(conn, name, active.version)
        target = (
            get_version(conn, workspace.root, name, target_number)
            if target_number is not None
            else None
        )
    if target is not None and active is not None and target.version == active.version:
        raise UsageError(f"{target.ref} is already active")
    if target is not None:
        verify_files(target)
    text = reason or f"rolled back from {_v(active.version if active else None)}"
    extra = {"automatic": automatic, **(details or {})}
    if target is not None:
        extra["restored_metrics"] = {k: v.get("metrics") for k, v in target.eval_metrics.items()}
    switch = _switch(
        workspace.raw_db,
        name,
        expect_active=active.version if active else None,
        to_version=target.version if target else None,
        demoted_status="rejected" if automatic else "retired",
        event="rolled_back",
        reason=text,
        forced=False,
        details=extra,
    )
    _swap(workspace, name, target, active, switch, echo)
    return Move(
        name,
        "rolled_back",
        target.version if target else None,
        active.version if active else None,
        text,
        False,
        extra,
    )


def _activation(conn: sqlite3.Connection, name: str, version: int) -> tuple[str, dict[str, Any]]:
    """When `name@vN` last became active, and the metrics it became active on."""
    for event in reversed(events(conn, name)):
        if event.version == version and event.event in ("promoted", "rolled_back"):
            metrics = event.details.get("promoted_metrics")
            if metrics is None:
                restored = event.details.get("restored_metrics") or {}
                metrics = next(iter(restored.values()), None) or {}
            return event.created_at, metrics
    return "", {}


def check(workspace: Workspace, name: str, *, echo: Echo | None = None) -> Move | None:
    """Compare the active version's live metrics with those it was promoted on; roll back
    on a regression beyond the noise floor. Returns the rollback, or None."""
    say = echo or (lambda _m: None)
    config = workspace.config
    with closing(workspace.raw_db()) as conn:
        active = active_version(conn, workspace.root, name)
        if active is None:
            say(f"{name} has no active version: nothing to check")
            return None
        since, promoted = _activation(conn, name, active.version)
        scores = live_scores(conn, name, active.version, since=since, repos_dir=workspace.repos_dir)
    if not promoted:
        say(f"{active.ref} was made active without eval metrics: nothing to compare")
        return None
    if len(scores) < config.settings.adapters.min_live_samples:
        what = "retrievals" if active.kind == "ranker" else "calls"
        say(
            f"{active.ref}: {len(scores)} scored live {what}, fewer than "
            f"{config.settings.adapters.min_live_samples} ([adapters] min_live_samples): "
            "no verdict"
        )
        return None
    live = mean_metrics(scores)
    regressions, report = [], {}
    for metric in primary_metrics(name):
        if metric not in live or metric not in promoted:
            continue
        values = [s[metric] for s in scores if metric in s]
        noise = max(
            config.settings.adapters.noise_floor,
            bootstrap_floor(
                values,
                samples=config.settings.adapters.bootstrap,
                quantile=config.settings.adapters.bootstrap_quantile,
            ),
        )
        delta = live[metric] - promoted[metric]
        report[metric] = {
            "live": live[metric],
            "promoted": promoted[metric],
            "delta": delta,
            "noise_floor": noise,
            "n": len(values),
        }
        if delta < -noise:
            regressions.append(metric)
    for metric, r in report.items():
        say(
            f"{active.ref} {metric}: live {r['live']:.3f} vs promoted {r['promoted']:.3f} "
            f"(n={r['n']}, floor {r['noise_floor']:.3f})"
        )
    if not regressions:
        return None
    why = "automatic: live " + ", ".join(
        f"{m} {report[m]['live']:.3f} < promoted {report[m]['promoted']:.3f} - "
        f"floor {report[m]['noise_floor']:.3f}"
        for m in regressions
    )
    return rollback(
        workspace,
        name,
        reason=why,
        automatic=True,
        details={"live": report, "regressions": regressions},
        echo=echo,
    )
