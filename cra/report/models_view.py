"""The training and registry sections of the report: loss curves, versions, events."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from cra.adapters.registry import Version, adapter_names, events, list_versions
from cra.db.train_steps import TrainStep, train_steps
from cra.report.model import Cell, Chart, Section, Series, Table

HYPERPARAMS = ("method", "learning_rate", "epochs", "max_steps", "batch_size", "rank", "alpha")
TIMELINE_EVENTS = ("registered", "evaluated", "promoted", "rejected", "rolled_back")


def step_label(step: TrainStep) -> str:
    """The series a step belongs to: its version, or its run when none was registered."""
    if step.version is not None:
        return f"{step.adapter}@v{step.version}"
    return f"{step.run_id} (unregistered)"


def training_section(conn: sqlite3.Connection, root: Path) -> Section:
    """The loss curve of every adapter version, with its dataset, hyperparameters and
    throughput."""
    curves: dict[str, list[TrainStep]] = defaultdict(list)
    for step in train_steps(conn):
        if step.loss is not None:
            curves[step_label(step)].append(step)
    charts: list[Chart] = []
    if curves:
        series = tuple(
            Series(label, tuple(s.step for s in rows), tuple(s.loss for s in rows), "line")
            for label, rows in curves.items()
        )
        charts.append(Chart("loss", "Training loss per step", series, "step", "loss"))
    versions = list_versions(conn, root)
    tables = (_versions_table(versions),) if versions else ()
    return Section(
        "training",
        "Training",
        "cra train --dataset ID --adapter NAME",
        tuple(charts),
        tables,
    )


def _versions_table(versions: list[Version]) -> Table:
    rows: list[tuple[Cell, ...]] = []
    for v in versions:
        hp = v.hyperparams
        metrics = v.train_metrics
        rows.append(
            (
                v.ref,
                v.status,
                v.dataset_id,
                ", ".join(f"{k}={hp[k]}" for k in HYPERPARAMS if hp.get(k) is not None),
                metrics.get("steps"),
                metrics.get("seconds"),
                metrics.get("tokens_per_s"),
                metrics.get("last_loss"),
            )
        )
    headers = ("version", "status", "dataset", "hyperparameters", "steps", "seconds")
    return Table("Adapter versions", (*headers, "tokens/s", "last loss"), tuple(rows))


def registry_section(conn: sqlite3.Connection, root: Path) -> Section:
    """A timeline per adapter of its versions' events with reasons; eval metrics of each
    version next to the active version's and the base model's."""
    charts: list[Chart] = []
    tables: list[Table] = []
    for name in adapter_names(conn):
        history = events(conn, name)
        by_kind: dict[str, list[Any]] = defaultdict(list)
        for e in history:
            if e.version is not None:  # a name-level event has no point on the version axis
                by_kind[e.event].append(e)
        series = tuple(
            Series(
                kind,
                tuple(e.created_at for e in rows),
                tuple(e.version for e in rows),
                "line",
                tuple(e.reason or "" for e in rows),
            )
            for kind, rows in by_kind.items()
        )
        if series:
            charts.append(
                Chart(f"timeline-{name}", f"{name}: version events", series, "when", "version")
            )
            rows = tuple(
                (e.created_at, e.event, e.version, e.from_version, e.reason) for e in history
            )
            tables.append(
                Table(f"{name}: history", ("when", "event", "version", "from", "reason"), rows)
            )
        evals = _eval_table(name, list_versions(conn, root, name))
        if evals is not None:
            tables.append(evals)
    return Section(
        "registry",
        "Registry",
        "cra adapter eval / promote / rollback NAME@vN",
        tuple(charts),
        tuple(tables),
    )


def _eval_table(name: str, versions: list[Version]) -> Table | None:
    active = next((v for v in versions if v.status == "active"), None)
    rows: list[tuple[Cell, ...]] = []
    for v in versions:
        for holdout, result in sorted(v.eval_metrics.items()):
            mine = result.get("metrics", {}) if isinstance(result, dict) else {}
            base = result.get("base_metrics", {}) if isinstance(result, dict) else {}
            theirs = {}
            if active is not None and isinstance(active.eval_metrics.get(holdout), dict):
                theirs = active.eval_metrics[holdout].get("metrics", {})
            for metric, value in sorted(mine.items()):
                rows.append((v.ref, holdout, metric, value, theirs.get(metric), base.get(metric)))
    if not rows:
        return None
    headers = ("version", "holdout", "metric", "value", "active", "base")
    active_ref = active.ref if active else "none"
    return Table(f"{name}: eval metrics (active: {active_ref})", headers, tuple(rows))
