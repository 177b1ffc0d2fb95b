"""Validating a repository with a progress bar, for the commands that validate."""

from __future__ import annotations

from cra.commands import Context
from cra.commands.options import parse_date
from cra.commands.output import counted_progress


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
    with counted_progress("validating", hidden=as_json) as progress:
        summary = validate_repo(ctx.workspace(), repo, options, progress=progress)
    return summary.as_dict()
