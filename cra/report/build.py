"""Writing the report of a workspace: `raw.db` read-only, one HTML file out."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cra.db.connection import connect_readonly, table_names
from cra.db.logs import LogAnalysis
from cra.errors import NotFound
from cra.fsutil import atomic_write_text
from cra.report.harness_view import harness_section, planning_section
from cra.report.loop_view import loop_section
from cra.report.model import Report, Section
from cra.report.models_view import registry_section, training_section
from cra.report.page import render
from cra.report.resources_view import resources_section
from cra.workspace import Workspace

REPORT_NAME = "report.html"


@dataclass(frozen=True)
class SectionSummary:
    """What one section of a written report holds."""

    key: str
    empty: bool
    charts: dict[str, tuple[int, ...]]  # chart id -> points per series

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {"key": self.key, "empty": self.empty, "charts": self.charts}


@dataclass(frozen=True)
class ReportResult:
    """A written report: where, how big, what it holds and how long it took."""

    path: Path
    bytes: int
    seconds: float
    sections: tuple[SectionSummary, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "seconds": self.seconds,
            "sections": [s.as_dict() for s in self.sections],
        }


def gather(workspace: Workspace) -> Report:
    """Every section's data, read from the workspace's `raw.db` opened read-only."""
    path = workspace.raw_db_path
    if not path.is_file():
        raise NotFound(f"{path} does not exist: this workspace has recorded nothing yet")
    busy = workspace.config.settings.db.busy_timeout_ms
    with closing(connect_readonly(path, busy_timeout_ms=busy)) as conn:
        sections = read_sections(conn, workspace.root)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return Report(str(workspace.root), now, sections)


def read_sections(conn: sqlite3.Connection, root: Path) -> tuple[Section, ...]:
    """Every section's data from `conn` (the `raw.db` of the workspace at `root`)."""
    analysis = LogAnalysis(conn)
    sections: list[Section] = [
        harness_section(conn, analysis),
        planning_section(analysis),
        training_section(conn, root),
        registry_section(conn, root),
        resources_section(conn, analysis, root),
    ]
    loop = loop_section(conn, table_names(conn), root)
    if loop is not None:
        sections.append(loop)
    return tuple(sections)


def write_report(workspace: Workspace, out_dir: Path | None = None) -> ReportResult:
    """Write `report.html` into `out_dir` (default: the workspace root) and say what it holds."""
    from plotly.offline import get_plotlyjs

    started = time.perf_counter()
    report = gather(workspace)
    target = (Path(out_dir) if out_dir is not None else workspace.root) / REPORT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    text = render(report, get_plotlyjs())
    atomic_write_text(target, text)
    summaries = tuple(
        SectionSummary(s.key, s.is_empty, {c.id: c.points for c in s.charts})
        for s in report.sections
    )
    seconds = round(time.perf_counter() - started, 3)
    return ReportResult(target, len(text.encode("utf-8")), seconds, summaries)
