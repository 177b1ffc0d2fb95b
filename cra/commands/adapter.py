"""`cra adapter`: the versioned registry: list, show, eval, promote, rollback, check."""

from __future__ import annotations

import json
from contextlib import closing

import click

from cra.adapters.registry import Version
from cra.commands import Context, pass_context
from cra.commands.options import (
    json_option,
    require_adapter,
    require_adapter_version,
    require_dataset,
)


@click.group("adapter")
def adapter() -> None:
    """Every adapter version ever trained: evaluate, promote (gated), roll back."""


def _num(value: object, spec: str) -> str:
    """A recorded number formatted with `spec`; anything else as it is."""
    return format(value, spec) if isinstance(value, int | float) else str(value)


def _metrics_line(version: Version) -> str:
    parts = []
    for key, result in sorted(version.eval_metrics.items()):
        shown = ", ".join(f"{m} {result['metrics'].get(m, 0):.3f}" for m in result["primary"])
        parts.append(f"{key}: {shown}")
    return "; ".join(parts) or "not evaluated"


@adapter.command("list")
@json_option()
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """Every version: status, dataset, metrics."""
    from cra.adapters.registry import list_versions

    workspace = ctx.workspace()
    with closing(workspace.raw_db()) as conn:
        versions = list_versions(conn, workspace.root)
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in versions], indent=2))
        return
    if not versions:
        click.echo("no adapter versions (train one with `cra train`)")
        return
    for v in versions:
        click.echo(
            f"{v.ref:<22} {v.status:<9} {v.method:<3} dataset {v.dataset_id}  {_metrics_line(v)}"
        )


@adapter.command("show")
@click.argument("ref", metavar="NAME[@vN]")
@json_option()
@pass_context
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """One name (its versions and history) or one version NAME@vN with its lineage."""
    from cra.adapters.live import runs_using
    from cra.adapters.registry import events, get_version, list_versions, parse_ref
    from cra.datasets_store import plan_path

    workspace = ctx.workspace()
    name, number = parse_ref(ref)
    with closing(workspace.raw_db()) as conn:
        if number is None:
            versions = list_versions(conn, workspace.root, name)
            if not versions:
                from cra.errors import NotFound

                raise NotFound(f"no adapter named {name!r}", hint="see `cra adapter list`")
        else:
            versions = [get_version(conn, workspace.root, name, number)]
        history = [
            e for e in events(conn, name) if number is None or number in (e.version, e.from_version)
        ]
        runs = {v.version: runs_using(conn, name, v.version) for v in versions}
        plans = {v.version: plan_path(conn, v.dataset_id) for v in versions}
    if as_json:
        data = {
            "versions": [
                {
                    **v.as_dict(),
                    "lineage": {
                        "dataset": v.dataset_id,
                        "plan": plans[v.version],
                        "harness_runs": runs[v.version],
                    },
                }
                for v in versions
            ],
            "events": [e.as_dict() for e in history],
        }
        click.echo(json.dumps(data, indent=2))
        return
    for v in versions:
        plan = plans[v.version]
        click.echo(f"{v.ref}  {v.status}  created {v.created_at}")
        click.echo(f"  path {v.path}")
        click.echo(
            f"  base {v.base_model} (hash {v.base_model_hash[:12]}, "
            f"tokenizer {v.tokenizer_hash[:12]})"
        )
        click.echo(
            f"  lineage: dataset {v.dataset_id} -> plan {plan} -> harness runs "
            f"{runs[v.version] or 'none yet'}"
        )
        tm = v.train_metrics
        first_loss = _num(tm.get("first_loss"), ".3f")
        last_loss = _num(tm.get("last_loss"), ".3f")
        speed = _num(tm.get("tokens_per_s"), ",.0f")
        click.echo(
            f"  trained: {v.method}, {tm.get('steps')} steps, "
            f"loss {first_loss} -> {last_loss}, {speed} tokens/s"
        )
        click.echo(f"  eval: {_metrics_line(v)}")
    click.echo("history:")
    for e in history:
        target = f"v{e.version}" if e.version is not None else "none"
        source = f" (from v{e.from_version})" if e.from_version is not None else ""
        forced = " FORCED" if e.forced else ""
        click.echo(f"  {e.created_at}  {e.event:<12} {target}{source}{forced}  {e.reason or ''}")


@adapter.command("eval")
@click.argument("ref", metavar="NAME@vN")
@click.option(
    "--dataset",
    "dataset_id",
    default=None,
    help="Holdout of this dataset (default: the one it was trained on).",
)
@click.option("--limit", type=int, default=None, help="Evaluate the first N examples only.")
@click.option(
    "--max-new-tokens",
    type=int,
    default=None,
    help="Tokens per example (default: [adapters] max_new_tokens).",
)
@json_option()
@pass_context
def eval_(
    ctx: Context,
    ref: str,
    dataset_id: str | None,
    limit: int | None,
    max_new_tokens: int | None,
    as_json: bool,
) -> None:
    """Evaluate NAME@vN on a dataset's eval split (the chronological holdout)."""
    from rich.progress import Progress

    from cra.adapters.evaluate import evaluate
    from cra.errors import UsageError

    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    require_adapter_version(ctx.workspace(), ref)
    if dataset_id is not None:
        require_dataset(ctx.workspace(), dataset_id)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task(f"evaluating {ref}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        workspace = ctx.workspace()
        result = evaluate(
            workspace,
            ref,
            dataset_id=dataset_id,
            limit=limit,
            max_new_tokens=max_new_tokens,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{ref} on {result['holdout']} ({result['n']} examples, {result['backend']}):")
    for metric, value in sorted(result["metrics"].items()):
        base = result["base_metrics"].get(metric)
        mark = " (primary)" if metric in result["primary"] else ""
        click.echo(f"  {metric:<18} {value:.3f}   base model {base:.3f}{mark}")


@adapter.command("promote")
@click.argument("ref", metavar="NAME@vN")
@click.option("--force", is_flag=True, help="Skip the gate (recorded as forced).")
@click.option("--reason", default=None, help="Why, for the history.")
@pass_context
def promote_(ctx: Context, ref: str, force: bool, reason: str | None) -> None:
    """Make NAME@vN the active version, if no primary metric regresses beyond the noise
    floor on the holdout both were evaluated on."""
    from cra.adapters.lifecycle import promote

    move = promote(ctx.workspace(), ref, force=force, reason=reason, echo=click.echo)
    before = f"v{move.from_version}" if move.from_version else "no active version"
    click.echo(f"{move.name}@v{move.to_version} is active (was {before}): {move.reason}")
    for metric, m in move.details.get("metrics", {}).items():
        click.echo(
            f"  {metric}: {m['candidate']:.3f} vs {m['baseline']:.3f} "
            f"(floor {m['noise_floor']:.3f})"
        )


@adapter.command("rollback")
@click.argument("name")
@click.option("--to", "to", default=None, help="The version to make active, e.g. v3.")
@click.option("--reason", default=None, help="Why, for the history.")
@pass_context
def rollback_(ctx: Context, name: str, to: str | None, reason: str | None) -> None:
    """Make the previously active version of NAME active again (a registry update)."""
    from cra.adapters.lifecycle import rollback
    from cra.errors import UsageError

    require_adapter(ctx.workspace(), name)
    number = None
    if to is not None:
        text = to.lower().removeprefix("v")
        if not text.isdigit():
            raise UsageError(f"--to {to!r} is not a version", hint="write --to v3")
        number = int(text)
    move = rollback(ctx.workspace(), name, to=number, reason=reason, echo=click.echo)
    now = f"v{move.to_version}" if move.to_version else "no version (the base model)"
    click.echo(f"{name}: {now} is active again (was v{move.from_version})")


@adapter.command("check")
@click.argument("name")
@pass_context
def check_(ctx: Context, name: str) -> None:
    """Compare NAME's active version's live metrics with those it was promoted on and
    roll back automatically on a regression beyond the noise floor."""
    from cra.adapters.lifecycle import check

    require_adapter(ctx.workspace(), name)
    move = check(ctx.workspace(), name, echo=click.echo)
    if move is None:
        click.echo(f"{name}: no regression, nothing changed")
        return
    now = f"v{move.to_version}" if move.to_version else "no version"
    click.echo(f"{name}: rolled back to {now} (from v{move.from_version}): {move.reason}")
