"""What a report is made of: sections of charts and tables, plain data before any HTML.

Every string here is raw (it may come from a mined repository); the page escapes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Cell = str | int | float | None


@dataclass(frozen=True)
class Series:
    """One trace of a chart: `x` and `y` of equal length, one point per recorded row."""

    name: str
    x: tuple[Cell, ...]
    y: tuple[float | int | None, ...]
    kind: str = "bar"  # bar, line
    text: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"series {self.name!r}: {len(self.x)} x values, {len(self.y)} y")
        if self.kind not in ("bar", "line"):
            raise ValueError(f"series {self.name!r}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Chart:
    """A chart: its DOM id, title, axis titles and series."""

    id: str
    title: str
    series: tuple[Series, ...]
    x_title: str = ""
    y_title: str = ""
    stacked: bool = False

    @property
    def points(self) -> tuple[int, ...]:
        """Points per series, in order (what the page must draw)."""
        return tuple(len(s.x) for s in self.series)


@dataclass(frozen=True)
class Table:
    """A table: a caption, headers and rows of cells."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class Section:
    """A part of the report; `empty` names the command that fills it when it has nothing."""

    key: str
    title: str
    empty: str
    charts: tuple[Chart, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_empty(self) -> bool:
        """Whether nothing was recorded for this section."""
        return not self.charts and not self.tables


@dataclass(frozen=True)
class Report:
    """The whole report: where its data came from and its sections, in order."""

    workspace: str
    generated_at: str
    sections: tuple[Section, ...]

    def charts(self) -> tuple[Chart, ...]:
        """Every chart of every section, in page order."""
        return tuple(c for s in self.sections for c in s.charts)
