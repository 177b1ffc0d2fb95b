"""`cra report`: the whole pipeline in one offline HTML file."""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option


@click.command("report")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder to write report.html into (default: the workspace root).",
)
@click.option("--open", "open_it", is_flag=True, help="Open the report in a browser.")
@json_option("Print where the report is and what each section holds, as JSON.")
@pass_context
def report(ctx: Context, out_dir: Path | None, open_it: bool, as_json: bool) -> None:
    """Write report.html: harness funnel and yield, retrieval and planning, training loss
    curves, the registry's history, and resources, from raw.db opened read-only.

    One self-contained file (the chart library is embedded): it opens offline and makes
    no request.
    """
    from cra.report.build import write_report

    result = write_report(ctx.workspace(), out_dir)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        empty = [s.key for s in result.sections if s.empty]
        if empty:
            click.echo(f"nothing recorded yet for: {', '.join(empty)}", err=True)
        click.echo(str(result.path))
    if open_it:
        webbrowser.open(result.path.as_uri())
