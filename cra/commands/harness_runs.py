"""`cra harness runs list`: the recorded plan, validate and grade runs."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import asdict

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option
from cra.db.runs import RUN_KINDS, list_runs


@click.group("runs")
def runs() -> None:
    """The runs the harness recorded, numbered per kind (`plan #2`, `validate #3`)."""


@runs.command("list")
@click.option(
    "--kind", type=click.Choice(RUN_KINDS), default=None, help="Only the runs of this kind."
)
@json_option("Print the runs as JSON.")
@pass_context
def list_command(ctx: Context, kind: str | None, as_json: bool) -> None:
    """Every recorded run, oldest first: its kind and number among that kind, repository,
    status and times. A command that had nothing to do records no run."""
    with closing(ctx.workspace().raw_db()) as conn:
        found = list_runs(conn, kind)
    if as_json:
        click.echo(json.dumps([asdict(r) | {"label": r.label} for r in found], indent=2))
        return
    if not found:
        click.echo("no runs recorded" + (f" of kind {kind}" if kind else ""))
        return
    for r in found:
        planner = f" ({r.planner})" if r.planner else ""
        ended = f" -> {r.finished_at}" if r.finished_at else ""
        error = f": {r.error}" if r.error else ""
        click.echo(
            f"{r.label:<14} {r.repo or '-':<16} {r.status:<11} {r.started_at}{ended}"
            f"{planner}{error}"
        )
