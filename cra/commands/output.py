"""Printing what commands report: text that may come from a repository (subjects, paths,
tool output) and the summaries several commands share."""

from __future__ import annotations

from typing import cast

import click

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
