"""The loop section: the latest run's cycles on a time axis with each target's metric, the
decision and stop reason per cycle, time per cycle and step, tokens per cycle, and the
journal's last events with whether its hash chain holds."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cra.adapters.registry import Version, list_versions
from cra.db import loop as store
from cra.errors import UsageError
from cra.loop.decisions import decisions_of
from cra.loop.limits import Target, parse_target
from cra.report.harness_view import run_seconds
from cra.report.model import Chart, Section, Series, Table

LOOP_TABLES = ("loop_runs", "loop_cycles", "loop_steps", "loop_events")
LAST_EVENTS = 12
EMPTY = "cra loop start"


def _targets(run: store.LoopRun) -> tuple[Target, ...]:
    found = []
    for text in run.limits.get("targets") or ():
        try:
            found.append(parse_target(str(text)))
        except UsageError:
            continue
    return tuple(found)


def _latest_metrics(version: Version) -> dict[str, float]:
    """The metrics of a version's latest evaluation (as the gate and the targets read them)."""
    results = [r for r in version.eval_metrics.values() if isinstance(r, dict)]
    results.sort(key=lambda r: str(r.get("evaluated_at", "")))
    metrics = results[-1].get("metrics", {}) if results else {}
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _metrics_chart(
    cycles: list[store.LoopCycle], targets: tuple[Target, ...], versions: dict[str, Version]
) -> Chart | None:
    """Per target: the metric of the cycle's candidate of that adapter (cycles without one
    draw no point) against the target's value (one point per cycle)."""
    if not targets or not cycles:
        return None
    series: list[Series] = []
    for target in targets:
        xs, ys = [], []
        for cycle in cycles:
            for ref in cycle.summary.get("candidates") or ():
                version = versions.get(str(ref))
                value = _latest_metrics(version).get(target.metric) if version else None
                if version is not None and version.name == target.adapter and value is not None:
                    xs.append(cycle.started_at)
                    ys.append(value)
                    break
        series.append(Series(target.key, tuple(xs), tuple(ys), "line"))
        times = tuple(c.started_at for c in cycles)
        series.append(Series(f"target {target.text}", times, (target.value,) * len(times), "line"))
    return Chart(
        "loop-metrics",
        "Stage metrics per cycle against their targets",
        tuple(series),
        "cycle started",
        "metric",
    )


def _time_chart(cycles: list[store.LoopCycle], steps: list[store.LoopStep]) -> Chart:
    """Seconds per cycle, stacked by step (one point per cycle that ran the step)."""
    names = list(dict.fromkeys(s.step for s in steps))
    series = []
    for name in names:
        spent: dict[int, float] = {}
        for step in steps:
            seconds = run_seconds(step.started_at, step.ended_at)
            if step.step == name and seconds is not None:
                spent[step.cycle] = spent.get(step.cycle, 0.0) + seconds
        xs = tuple(f"cycle {c.number}" for c in cycles if c.number in spent)
        ys = tuple(round(spent[c.number], 3) for c in cycles if c.number in spent)
        series.append(Series(name, xs, ys))
    labels = tuple(f"cycle {c.number}" for c in cycles)
    total = Series("cycle total", labels, tuple(round(c.runtime_s, 3) for c in cycles), "line")
    return Chart("loop-time", "Time per cycle and step", (*series, total), "", "seconds")


def _tokens_chart(cycles: list[store.LoopCycle]) -> Chart:
    labels = tuple(f"cycle {c.number}" for c in cycles)
    tokens = (Series("tokens", labels, tuple(c.tokens for c in cycles)),)
    return Chart("loop-tokens", "LLM tokens per cycle", tokens, "", "tokens")


def _decisions_table(conn: sqlite3.Connection, run: store.LoopRun) -> Table:
    decided = {d.number: d for d in decisions_of(conn, run.id)}
    rows = []
    for cycle in store.cycles(conn, run.id):
        d = decided.get(cycle.number)
        rows.append(
            (
                cycle.number,
                cycle.started_at,
                cycle.summary.get("repo") or cycle.repo,
                cycle.status,
                round(cycle.runtime_s, 3),
                cycle.tokens,
                ", ".join(d.candidates) if d else "",
                d.gate if d else "-",
                d.next_move if d else "running",
            )
        )
    headers = (
        "cycle",
        "started",
        "repo",
        "status",
        "seconds",
        "tokens",
        "candidates",
        "gate",
        "then",
    )
    return Table("Decision per cycle", headers, tuple(rows))


def _events_table(conn: sqlite3.Connection, run: store.LoopRun) -> Table:
    last = store.events(conn, run.id, last=LAST_EVENTS)
    rows = tuple(
        (e.id, e.created_at, e.kind, json.dumps(e.payload, sort_keys=True, default=str))
        for e in last
    )
    return Table(f"Last {len(rows)} journal events", ("id", "at", "kind", "payload"), rows)


def _notes(conn: sqlite3.Connection, run: store.LoopRun) -> tuple[str, ...]:
    checked, broken = store.verify_journal(conn)
    chain = (
        f"The journal's hash chain verifies ({checked} events checked)."
        if broken is None
        else f"The journal's hash chain is BROKEN at event {broken.event_id}: {broken.problem}."
    )
    stop = f", stopped: {run.stop_reason}" if run.stop_reason else ""
    head = (
        f"Loop run {run.id}: {run.status}{stop}, cycle {run.cycle}, "
        f"{run.runtime_s / 3600:.3f} h, started {run.started_at}."
    )
    return head, chain


def loop_section(conn: sqlite3.Connection, tables: frozenset[str], root: Path) -> Section | None:
    """The latest loop run's view; None while `raw.db` has no loop tables, empty (naming
    `cra loop start`) while no loop has run."""
    if not all(t in tables for t in LOOP_TABLES):
        return None
    run = store.latest_run(conn)
    if run is None:
        return Section("loop", "Loop", EMPTY)
    cycles = store.cycles(conn, run.id)
    steps = store.steps(conn, run.id)
    versions = {v.ref: v for v in list_versions(conn, root)}
    charts = [
        c
        for c in (
            _metrics_chart(cycles, _targets(run), versions),
            _time_chart(cycles, steps) if cycles else None,
            _tokens_chart(cycles) if cycles else None,
        )
        if c is not None
    ]
    shown = (_decisions_table(conn, run), _events_table(conn, run))
    return Section("loop", "Loop", EMPTY, tuple(charts), shown, _notes(conn, run))
