"""The resources section: time, tokens, disk."""

from __future__ import annotations

import os
import sqlite3
from collections import defaultdict
from pathlib import Path

from cra.adapters.registry import list_versions
from cra.db.logs import LogAnalysis
from cra.db.runs import list_runs
from cra.report.harness_view import run_seconds
from cra.report.model import Chart, Section, Series


def resources_section(conn: sqlite3.Connection, analysis: LogAnalysis, root: Path) -> Section:
    """Wall time per stage, LLM tokens per stage and adapter, disk per workspace folder."""
    charts: list[Chart] = []
    spent: dict[str, float] = defaultdict(float)
    for run in list_runs(conn):
        seconds = run_seconds(run.started_at, run.finished_at)
        if seconds is not None:
            spent[run.kind] += seconds
    for version in list_versions(conn, root):
        seconds = version.train_metrics.get("seconds")
        if isinstance(seconds, int | float):
            spent["train"] += float(seconds)
    if spent:
        kinds = tuple(sorted(spent))
        per_kind = (Series("seconds", kinds, tuple(round(spent[k], 2) for k in kinds)),)
        charts.append(Chart("time", "Wall time per stage", per_kind, "stage", "seconds"))
    totals = analysis.token_totals()
    if totals:
        stages = tuple(t.stage for t in totals)
        labels = tuple(f"{t.adapter}@v{t.adapter_version}" if t.adapter else "base" for t in totals)
        keys = tuple(f"{s} · {a}" for s, a in zip(stages, labels, strict=True))
        series = (
            Series("prompt", keys, tuple(t.prompt_tokens for t in totals)),
            Series("completion", keys, tuple(t.completion_tokens for t in totals)),
        )
        charts.append(
            Chart("tokens", "LLM tokens per stage and adapter", series, "", "tokens", True)
        )
    disk = disk_usage(root)
    if disk:
        folders = tuple(disk)
        mib = (Series("MiB", folders, tuple(round(disk[f] / 2**20, 3) for f in folders)),)
        charts.append(Chart("disk", "Disk per workspace folder", mib, "folder", "MiB"))
    return Section("resources", "Resources", "any cra command that records work", tuple(charts))


def disk_usage(root: Path) -> dict[str, int]:
    """Bytes under each top-level folder of the workspace (symlinks not followed)."""
    usage: dict[str, int] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        total = 0
        for base, _dirs, files in os.walk(folder):
            for name in files:
                path = Path(base, name)
                if not path.is_symlink():
                    total += path.stat().st_size
        usage[folder.name] = total
    return usage
