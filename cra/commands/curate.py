"""`cra train-plan` and `cra curate-data`: from logged runs to training JSONL."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option
from cra.commands.output import notice, quiet


@click.command("train-plan")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the plan (.json; a .md summary goes next to it). "
    "Default: planning/plan-TIMESTAMP.json in the workspace.",
)
@json_option("Print the plan as JSON.")
@pass_context
def train_plan(ctx: Context, out: Path | None, as_json: bool) -> None:
    """Analyse raw.db and write a training plan.

    Ranks the stages by weakness (gap to the [curate] targets, decline over time, data
    volume): scope = file recall, precision = symbol recall, planning = alignment,
    execute = FAIL_TO_PASS pass rate of graded patches. For each adapter (scope,
    precision, task-analysis, planning, execute-code) the plan says whether to train it,
    with which technique (SFT, DPO), from which data and how many examples, with the
    chronological holdout boundary, replay share and domain cap. Where the data is not
    enough it says so; when no adapter can be trained, no plan is written.
    """
    from rich.console import Console

    from cra.curation.plan import build_plan, write_plan

    workspace = ctx.workspace()
    with (
        Console(stderr=True).status("analysing raw.db", spinner="dots")
        if not (as_json or quiet())
        else nullcontext()
    ):
        plan = build_plan(workspace)
    path = write_plan(workspace.planning_dir, plan, out)
    if as_json:
        click.echo(json.dumps({"path": str(path), **plan}, indent=2))
        return
    click.echo(f"wrote {path} (summary: {path.with_suffix('.md').name})")
    click.echo(
        f"holdout: tasks authored on or after {plan['holdout']['boundary']} are eval "
        f"({plan['holdout']['eval_tasks']} eval, {plan['holdout']['train_tasks']} train tasks)"
    )
    for entry in plan["adapters"]:
        weakness = "n/a" if entry["weakness"] is None else f"{entry['weakness']:.3f}"
        parts = ", ".join(
            f"{t['technique']} {t['estimated_examples']['train']}/{t['estimated_examples']['eval']}"
            for t in entry["techniques"]
        )
        verdict = "train" if entry["train"] else "skip "
        click.echo(
            f"  {entry['rank']}. {verdict} {entry['name']:<14} weakness {weakness:<6} "
            f"rows train/eval: {parts}"
        )
        if not entry["train"]:
            click.echo(f"       {entry['reason']}")
    for warning in plan["warnings"]:
        click.echo(f"warning: {warning}")


@click.command("curate-data")
@click.option(
    "--plan",
    "plan_path",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The training plan to follow (from `cra train-plan`). Default: the newest plan "
    "in the workspace's planning/ folder.",
)
@click.option(
    "--out",
    "dataset_id",
    default=None,
    help="Dataset ID: the folder under training/datasets/. Default: ds-TIMESTAMP. "
    "An existing ID is refused.",
)
@json_option("Print the dataset card as JSON.")
@pass_context
def curate_data(
    ctx: Context, plan_path: Path | None, dataset_id: str | None, as_json: bool
) -> None:
    """Follow a plan and write training/datasets/ID/ (train.jsonl, eval.jsonl, card).

    SFT rows are TRL conversational prompt-completion, DPO rows prompt/chosen/rejected,
    each with `meta` provenance. Split by time at the plan's holdout boundary, exact and
    near-duplicates removed (MinHash LSH), at most [curate] domain_cap of rows from one
    domain, replay_share of train rows replayed from earlier datasets (which are never
    modified). The dataset is registered in raw.db with the sha256 of every file.
    """
    from cra.curation.curate import curate, newest_plan

    workspace = ctx.workspace()
    if plan_path is None:
        plan_path = newest_plan(workspace.planning_dir)
        notice(f"following the newest plan, {plan_path} (--plan FILE to choose another)")
    progress = None if as_json else notice
    result = curate(workspace, plan_path, dataset_id, progress=progress)
    card = result.card
    if as_json:
        click.echo(json.dumps({"path": str(result.path), **card}, indent=2))
        return
    train, held = card["counts"]["train"], card["counts"]["eval"]
    click.echo(
        f"wrote dataset {result.dataset_id} at {result.path}: {train['rows']} train rows, "
        f"{held['rows']} eval rows, {card['replay']['rows']} replayed "
        f"({card['replay']['share_actual']:.0%})"
    )
    for group, n in sorted(train["by_group"].items()):
        click.echo(f"  {group:<22} train {n:>6}  eval {held['by_group'].get(group, 0):>6}")
    for entry in card["filters"]:
        click.echo(f"  dropped {entry['dropped']:>6}  {entry['filter']}")
    for warning in card["warnings"]:
        click.echo(f"warning: {warning}")
