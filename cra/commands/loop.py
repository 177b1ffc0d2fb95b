"""`cra loop`: the self-improvement loop (start, resume, stop, status, verify)."""

from __future__ import annotations

import json
from typing import Any

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option
from cra.commands.output import notice
from cra.errors import CraError


@click.group("loop")
def loop() -> None:
    """The self-improvement loop: cycles of ingest, harness, plan, curate, train,
    evaluate, promote and check, until a stop reason (README: `cra loop`)."""


_LIMITS: tuple[tuple[str, type, str], ...] = (
    ("max-cycles", int, "Cycles at most."),
    ("patience", int, "Cycles without a promotion before the loop has converged."),
    ("cycle-timeout-s", float, "Seconds one cycle may run."),
    ("max-hours", float, "Hours of runtime in all."),
    ("min-hours", float, "Hours before convergence may end the loop (it pivots until then)."),
    ("tokens-per-cycle", int, "LLM tokens one cycle may use."),
    ("tasks-per-cycle", int, "Tasks one cycle plans and validates at most."),
    ("max-failed-cycles", int, "Consecutive failed cycles that end the loop."),
    ("meta-every", int, "Cycles between meta events."),
    (
        "widen-every",
        int,
        "Cycles on one repository before pivoting to the next (0: on convergence).",
    ),
    ("meta-epochs-step", float, "Epochs a meta step may add to the ranker's."),
    ("meta-max-epochs", float, "Epochs a meta step never raises the ranker's over."),
)


def _limit_options(func: Any) -> Any:
    for flag, kind, text in reversed(_LIMITS):
        func = click.option(f"--{flag}", type=kind, default=None, help=f"{text} ([loop])")(func)
    return click.option(
        "--target",
        "targets",
        multiple=True,
        help='A target that ends the loop, e.g. "scope-ranker.recall_at_1>=0.8" (repeatable; '
        "replaces [loop] targets).",
    )(func)


@loop.command("start")
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
