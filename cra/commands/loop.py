"""`cra loop`: the self-improvement loop (start, resume, stop, status, verify)."""

from __future__ import annotations

import json
from typing import Any

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option
from cra.commands.output import notice
from cra.errors import CraError
from cra.loop.decide import STOP_REASON_HELP
from cra.settings_table import LOOP_SETTINGS, Setting


@click.group("loop")
def loop() -> None:
    """The self-improvement loop: cycles of ingest, harness, plan, curate, train,
    evaluate, promote and check, until a stop reason (README: `cra loop`)."""


def _default(setting: Setting) -> str:
    return f"{setting.default:g}" if isinstance(setting.default, float) else str(setting.default)


def _limit_options(func: Any) -> Any:
    """A flag for every [loop] setting but the targets, its help and default the table's."""
    for setting in reversed(LOOP_SETTINGS):
        if setting.key == "targets":
            continue
        text = f"{setting.help} (default {_default(setting)}; [loop] {setting.key})"
        flag = "--" + setting.key.replace("_", "-")
        func = click.option(flag, type=setting.type, default=None, help=text)(func)
    return click.option(
        "--target",
        "targets",
        multiple=True,
        help='A target that ends the loop, e.g. "scope-ranker.recall_at_1>=0.8" (repeatable; '
        "replaces [loop] targets).",
    )(func)


STOP_REASONS = "Stop reasons (exit code):\n\n\b\n" + "\n".join(
    f"{reason.value} ({reason.exit_code}): {text}" for reason, text in STOP_REASON_HELP.items()
)


@loop.command("start", epilog=STOP_REASONS)
@_limit_options
@pass_context
def start(ctx: Context, targets: tuple[str, ...], **limits: Any) -> None:
    """Start a loop and run it until a stop reason; the exit code says which (0 done,
    1 failed cycles, 2 a limit, 3 kill switch, 130 a signal)."""
    from cra.loop.run import start_loop

    overrides = {k: v for k, v in limits.items() if v is not None}
    if targets:
        overrides["targets"] = list(targets)
    outcome = start_loop(ctx.workspace(), overrides, echo=notice)
    click.echo(f"{outcome.reason.value}: {outcome.detail}")
    click.echo(f"report: {outcome.report_md}")
    raise SystemExit(outcome.exit_code)


@loop.command("resume")
@pass_context
def resume(ctx: Context) -> None:
    """Continue the last loop at the step it was in (after a crash or a stop), with its
    cycle number, runtime and tokens carried over."""
    from cra.loop.run import resume_loop

    outcome = resume_loop(ctx.workspace(), echo=notice)
    click.echo(f"{outcome.reason.value}: {outcome.detail}")
    click.echo(f"report: {outcome.report_md}")
    raise SystemExit(outcome.exit_code)


@loop.command("stop")
@pass_context
def stop(ctx: Context) -> None:
    """Ask the running loop to stop; it ends within seconds, also mid-step."""
    from cra.loop.run import request_stop

    run_id = request_stop(ctx.workspace())
    click.echo(f"asked loop run {run_id} to stop")


@loop.command("status")
@json_option("Print the status as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """The current cycle and step, metrics against targets, budgets and the last events."""
    from cra.loop.report import loop_status

    found = loop_status(ctx.workspace())
    if found is None:
        raise CraError("no loop has run in this workspace", hint="start one: cra loop start")
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2, default=str))
        return
    run = found.run
    state = run.status if run.status == "running" else f"ended: {run.stop_reason}"
    click.echo(f"loop run {run.id} ({state}), cycle {run.cycle}, repo {run.repo or '-'}")
    if found.step is not None:
        click.echo(f"step: {found.step.step} ({found.step.status})")
    for target in found.targets:
        measured = "n/a" if target.measured is None else f"{target.measured:.3f}"
        click.echo(f"target {target.target}: {measured} {'met' if target.met else 'not met'}")
    for budget in found.budgets:
        click.echo(f"{budget.name}: {budget.used:g} used of {budget.limit:g}, {budget.left:g} left")
    click.echo(f"strategy: {found.strategy.text}")
    for change in found.meta:
        cycles = ",".join(map(str, change.cycles))
        click.echo(f"meta after cycles {cycles}: {change.old.text} -> {change.new.text}")
        for why in change.why:
            click.echo(f"  {why}")
    for event in found.last_events:
        click.echo(f"  {event.created_at} {event.kind} {json.dumps(dict(event.payload))}")


@loop.command("verify")
@json_option("Print the result as JSON.")
@pass_context
def verify(ctx: Context, as_json: bool) -> None:
    """Recompute the journal's hash chain; name the first broken link (exit 1)."""
    from cra.loop.report import verify as verify_journal

    result = verify_journal(ctx.workspace())
    if as_json:
        broken = None if result.broken is None else vars(result.broken)
        click.echo(json.dumps({"checked": result.checked, "broken": broken}))
    elif result.broken is None:
        click.echo(f"journal holds: {result.checked} events")
    else:
        click.echo(
            f"journal broken at event {result.broken.event_id}: {result.broken.problem} "
            f"({result.checked} events before it hold)"
        )
    if result.broken is not None:
        raise SystemExit(1)
