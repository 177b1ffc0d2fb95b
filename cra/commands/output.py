"""Printing what commands report: text that may come from a repository (subjects, paths,
tool output) and the summaries several commands share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cra.text import printable


def echo_safe(message: str, *, err: bool = False) -> None:
    """`click.echo` with control characters escaped (line breaks kept)."""
    click.echo(printable(message, keep_newlines=True), err=err)


def echo_summary(data: dict[str, object]) -> None:
    """Print a validation summary in one line."""
    # The summary's as_dict() maps each latest verdict to its count of tasks.
    latest = cast(dict[str, int], data["latest_verdicts"])
    verdicts = ", ".join(f"{v} ×{n}" for v, n in latest.items())
    click.echo(
        f"validated {data['tasks_done']} tasks of {data['repo']} ({data['tasks_skipped']} "
        f"already done) under {data['isolation']}: {data['verified']} of "
        f"{sum(latest.values())} verified" + (f" ({verdicts})" if verdicts else "")
    )


Tick = Callable[[int, int, str], None]
"""A progress callback: `(done, total, last item)`."""

INTERRUPTED = "interrupted: what finished is recorded; run again to resume"


@contextmanager
def counted_progress(label: str, *, hidden: bool) -> Iterator[Tick]:
    """A transient "LABEL [bar] N/M last-item" line for the block, fed by the callback it
    yields (nothing shown when `hidden`, e.g. with --json). Ctrl-C in the block ends the
    command with exit 130, saying that what finished is recorded."""
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
    )
    with Progress(*columns, transient=True, disable=hidden) as bar:
        task = bar.add_task(label, total=None, last="")

        def tick(done: int, total: int, last: str) -> None:
            bar.update(task, completed=done, total=total, last=last)

        try:
            yield tick
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            raise SystemExit(130) from None
