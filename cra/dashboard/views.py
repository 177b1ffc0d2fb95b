"""The report's sections as the dashboard's JSON: plotly figures and table rows.

The figures come from the report's own `figure` (every string already escaped, as plotly
reads labels as a subset of HTML); table cells and titles travel raw and the page sets
them as text, never as markup.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from cra.db.connection import connect_readonly, read_transaction
from cra.errors import CraError
from cra.report.build import read_sections
from cra.report.model import Section
from cra.report.page import MAX_ROWS, figure


def section_json(section: Section) -> dict[str, Any]:
    """One section: its title, the command that fills it, notes, figures and tables."""
    return {
        "key": section.key,
        "title": section.title,
        "empty": section.empty,
        "is_empty": section.is_empty,
        "notes": list(section.notes),
        "charts": [
            {"id": c.id, "points": list(c.points), "figure": figure(c)} for c in section.charts
        ],
        "tables": [
            {
                "caption": t.caption,
                "headers": list(t.headers),
                "rows": [list(r) for r in t.rows[:MAX_ROWS]],
                "more": max(0, len(t.rows) - MAX_ROWS),
            }
            for t in section.tables
        ],
    }


def read_views(path: Path, root: Path, *, busy_timeout_ms: int) -> list[dict[str, Any]]:
    """Every section of the report, read from `raw.db` at `path` in one read transaction."""
    with closing(connect_readonly(path, busy_timeout_ms=busy_timeout_ms)) as conn:
        sections = _sections(conn, root)
    return [section_json(s) for s in sections]


def _sections(conn: sqlite3.Connection, root: Path) -> tuple[Section, ...]:
    with read_transaction(conn):
        return read_sections(conn, root)


def views_payload(path: Path, root: Path, busy_timeout_ms: int) -> tuple[bytes, str, str | None]:
    """The views as JSON bytes, their sha256, and the error that stopped the read (then
    no bytes). Run in a child process, so rendering never holds the server's GIL."""
    try:
        views = read_views(path, root, busy_timeout_ms=busy_timeout_ms)
    except (CraError, sqlite3.Error) as exc:
        return b"", "", str(exc)
    body = json.dumps(views, separators=(",", ":")).encode()
    return body, hashlib.sha256(body).hexdigest(), None
