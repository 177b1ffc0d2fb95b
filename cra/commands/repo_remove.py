"""`cra repo remove`: take a packed repository out of the workspace."""

from __future__ import annotations

import json

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option


@click.command("remove")
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Remove it even though registered datasets hold rows of its tasks.",
)
@json_option("Print what was removed as JSON.")
@pass_context
def remove_command(ctx: Context, name: str, force: bool, as_json: bool) -> None:
    """Remove repository NAME: its package (repos/NAME/), the environments built for it
    under harness/envs/, its verified stamp, and its rows in raw.db.

    The rows (the repository, its commits, tasks, runs, verdicts, plans and test runs)
    are deleted, not marked removed: nothing of it keeps feeding plans, funnels or
    curation, and packing or importing NAME again starts clean. Because those rows are
    the provenance of training data, removal is refused while a registered dataset holds
    rows of its tasks, unless --force (the dataset files keep each row's repository,
    commit and task). Folders are renamed aside first and deleted only once the rows
    are, so a failure loses nothing. Holds the workspace's writer lock.
    """
    from cra.harness.removal import remove_repo

    with writing(ctx, "cra repo remove") as workspace:
        removed = remove_repo(workspace, name, force=force)
    if as_json:
        click.echo(json.dumps(removed.to_dict(), indent=2))
        return
    parts = []
    if removed.package is not None:
        parts.append(f"its package {removed.package}")
    if removed.envs:
        parts.append(f"{len(removed.envs)} built environment(s)")
    if removed.records:
        parts.append("its rows in raw.db")
    click.echo(f"removed {name}: " + ", ".join(parts))
    for use in removed.datasets:
        click.echo(
            f"warning: dataset {use.id} keeps {use.train} train and {use.eval} eval rows of "
            f"{name}; their raw.db records are gone"
        )
