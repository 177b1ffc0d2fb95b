"""Validating a repository with a progress bar, for the commands that validate."""

from __future__ import annotations

import click

from cra.commands import Context
from cra.commands.options import parse_date


def run_validation(
    ctx: Context,
    repo: str,
    *,
    limit: int | None,
    since: str | None,
    runs: int | None,
    unsafe: bool,
    force: bool,
    as_json: bool,
    jobs: int = 1,
    sample: int | None = None,
) -> dict[str, object]:
    """Validate REPO with a progress bar; return the summary as data."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cra.harness.validate import ValidateOptions, validate_repo

    since_date = parse_date(since, "--since")
    options = ValidateOptions(
        limit=limit,
        since=since_date,
        runs=runs,
        allow_unsafe=unsafe,
        force=force,
        jobs=jobs,
        sample=sample,
    )
    columns = (
        TextColumn("validating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
    )
    with Progress(*columns, transient=True, disable=as_json) as bar:
        task = bar.add_task("validate", total=None, last="")

        def progress(done: int, total: int, last: str) -> None:
            bar.update(task, completed=done, total=total, last=last)

        try:
            summary = validate_repo(ctx.workspace(), repo, options, progress=progress)
        except KeyboardInterrupt:
            click.echo("interrupted: what finished is recorded; run again to resume", err=True)
            raise SystemExit(130) from None
    return summary.as_dict()
