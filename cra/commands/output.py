"""Printing what commands report: text that may come from a repository (subjects, paths,
tool output) and the summaries several commands share."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cra.commands import Context
from cra.text import printable


def quiet() -> bool:
    """Whether the running command was given the global `--quiet`."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Context) if ctx is not None else None
    return bool(obj and obj.quiet)


def notice(message: str) -> None:
    """Say `message` (progress, a note) on stderr, unless `--quiet`; control characters
    escaped."""
    if not quiet():
        click.echo(printable(message, keep_newlines=True), err=True)


def stdout_is_tty() -> bool:
    """Whether stdout is a terminal (tables are drawn) rather than a pipe or file (TSV)."""
    return sys.stdout.isatty()


@dataclass(frozen=True)
class TextTable:
    """A table a command prints: drawn with a title on a terminal, else as TSV (a header
    line, then one line per row, no title or blank lines) that `cut` and `awk` can read."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    left: int = 1
    """How many leading columns are left-aligned when drawn (the rest are right-aligned)."""


def echo_table(table: TextTable) -> None:
    """Print `table`: rich on a terminal, TSV when stdout is not one."""
    if not stdout_is_tty():
        for cells in (table.columns, *table.rows):
            # printable() escapes tabs and line breaks, so a cell never splits a row.
            click.echo("\t".join(printable(c) for c in cells))
        return
    drawn = Table(title=table.title)
    for i, column in enumerate(table.columns):
        drawn.add_column(column, justify="left" if i < table.left else "right")
    for cells in table.rows:
        drawn.add_row(*(printable(c) for c in cells))
    Console().print(drawn)


def top_counts(counts: dict[str, int], keep: int = 3) -> str:
    """`a ×5, b ×2, c ×1 and N more`: the `keep` largest counts, naming how many others."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{name} ×{n}" for name, n in ranked[:keep])
    rest = len(ranked) - keep
    return shown + (f" and {rest} more" if rest > 0 else "")


def echo_safe(message: str, *, err: bool = False) -> None:
    """`click.echo` with control characters escaped (line breaks kept)."""
    click.echo(printable(message, keep_newlines=True), err=err)


def _left(data: dict[str, object]) -> str:
    left = data.get("tasks_left") or 0
    return f"; {left} more left for a later run (--limit)" if left else ""


def echo_summary(data: dict[str, object]) -> None:
    """Print a validation summary in one line: what it validated, what it skipped as
    already done, and the latest verdicts; with nothing to do, says so (no run recorded)."""
    # The summary's as_dict() maps each latest verdict to its count of tasks.
    latest = cast(dict[str, int], data["latest_verdicts"])
    verdicts = ", ".join(f"{v} ×{n}" for v, n in latest.items())
    tally = f"{data['verified']} of {sum(latest.values())} verified" + (
        f" ({verdicts})" if verdicts else ""
    )
    if data.get("run") is None:
        click.echo(
            f"nothing to validate in {data['repo']}: {data['tasks_skipped']} commits already "
            f"have a final verdict (no run recorded; --force validates again): {tally}"
        )
        return
    click.echo(
        f"{data['run']}: validated {data['tasks_done']} new tasks of {data['repo']} "
        f"({data['tasks_skipped']} already done, skipped{_left(data)}) under "
        f"{data['isolation']}: {tally}"
    )


def echo_plan_summary(data: dict[str, object]) -> None:
    """Print a planning summary in one line, like :func:`echo_summary`."""
    if data.get("run") is None:
        click.echo(
            f"nothing to plan in {data['repo']} ({data['planner']}): "
            f"{data['tasks_skipped']} commits already planned (no run recorded)"
        )
        return
    mean = data["mean_alignment"]
    shown = "n/a" if mean is None else f"{cast(float, mean):.3f}"
    click.echo(
        f"{data['run']} on {data['repo']} ({data['planner']}): {data['tasks_done']} new "
        f"tasks planned ({data['tasks_skipped']} already done, skipped{_left(data)}), "
        f"{data['plans']} plans ({data['invalid_plans']} invalid), mean alignment {shown}"
    )


Tick = Callable[[int, int, str], None]
"""A progress callback: `(done, total, last item)`."""

INTERRUPTED = "interrupted: what finished is recorded; run again to resume"


@contextmanager
def counted_progress(label: str, *, hidden: bool) -> Iterator[Tick]:
    """A transient "LABEL [bar] N/M last-item" line for the block, fed by the callback it
    yields (nothing shown when `hidden`, e.g. with --json, or with --quiet). Ctrl-C in the
    block ends the command with exit 130, saying that what finished is recorded."""
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
    )
    with Progress(*columns, transient=True, disable=hidden or quiet()) as bar:
        task = bar.add_task(label, total=None, last="")

        def tick(done: int, total: int, last: str) -> None:
            bar.update(task, completed=done, total=total, last=last)

        try:
            yield tick
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            raise SystemExit(130) from None
