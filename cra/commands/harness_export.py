"""`cra harness export` and `cra harness import`: verified tasks as SWE-bench instances,
and SWE-bench instances as tasks."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, parse_date
from cra.commands.output import notice

FORMATS = click.Choice(["swebench"])


@click.command("export")
@click.option("--format", "fmt", type=FORMATS, required=True, help="The format written.")
@click.option("--repo", "repo", default=None, help="Only this repository's tasks.")
@click.option("--since", default=None, help="Only tasks whose commit is on or after this date.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The JSON lines file to write (replaced atomically).",
)
@json_option("Print the summary as JSON.")
@pass_context
def export_command(
    ctx: Context, fmt: str, repo: str | None, since: str | None, out: Path, as_json: bool
) -> None:
    """Write every verified task as a SWE-bench instance, one JSON object per line.

    base_commit is the task's parent, patch its change minus the tests, test_patch its
    tests; FAIL_TO_PASS and PASS_TO_PASS are JSON-encoded lists, as in SWE-bench's
    datasets. Keys starting with cra_ say where the task came from (task id, commit,
    era, isolation, flaky tests).
    """
    from cra.harness.swebench import export_swebench

    start = parse_date(since, "--since")
    since_ts = None if start is None else int(start.timestamp())
    result = export_swebench(ctx.workspace(), out, repo=repo, since_ts=since_ts)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    per_repo = ", ".join(f"{name} ×{n}" for name, n in result.repos.items()) or "none verified"
    click.echo(f"wrote {result.instances} instances to {out} ({per_repo}), sha256 {result.sha256}")


@click.command("import")
@click.option("--format", "fmt", type=FORMATS, required=True, help="The format read.")
@click.argument(
    "path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--repo", "repo", default=None, help="The packed repository of every instance.")
@json_option("Print the summary as JSON.")
@pass_context
def import_command(ctx: Context, fmt: str, path: Path, repo: str | None, as_json: bool) -> None:
    """Read SWE-bench instances from FILE (JSON lines) as tasks of packed repositories.

    Each instance's repository (--repo, else its cra_repo or the last part of its repo
    key) must be packed; its base_commit must be in the package and its patch and
    test_patch must apply there. The task hangs on the package's commit with that parent
    and tree, or on a commit made for it. Validate the tasks with `cra harness validate`.
    Importing the same file again changes nothing.
    """
    from cra.harness.swebench_import import import_swebench

    with writing(ctx, "cra harness import", repo=repo) as workspace:
        result = import_swebench(workspace, path, repo=repo)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    click.echo(
        f"imported {len(result.tasks)} instances from {path.name}: {result.reused} on the "
        f"package's own commits, {result.made} on commits made for them, "
        f"{result.unchanged} unchanged since the last import"
    )
    notice(f"validate them with `cra harness validate --repo {repo or 'NAME'}`")
