"""`cra harness`: mine commits into tasks, plan and score them, show the funnel."""

from __future__ import annotations

import json
from contextlib import closing
from typing import cast

import click
from rich.console import Console
from rich.table import Table

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, parse_date
from cra.db.plans import PlannerAlignment, planner_alignments
from cra.errors import UsageError
from cra.harness.funnel import RepoFunnel, funnel
from cra.harness.reconcile import GONE_REASON
from cra.harness.yields import RepoYield, verified_yield


@click.group()
def harness() -> None:
    """Turn commits into tasks: mine the history, run planners, show the funnel."""


@harness.command("mine")
@click.option("--repo", "repo", required=True, help="Repository package name.")
@click.option("--since", default=None, help="Only commits authored on or after this date.")
@click.option("--until", default=None, help="Only commits authored on or before this date.")
@click.option("--rescore", is_flag=True, help="Recompute every verdict (after changing [mine]).")
@json_option("Print the funnel as JSON.")
@pass_context
def mine(
    ctx: Context, repo: str, since: str | None, until: str | None, rescore: bool, as_json: bool
) -> None:
    """Run REPO's history through the commit funnel and record every verdict.

    Stages: structural (merges, root, no Python), message (imperative, descriptive, not
    noise), size (files, lines, binaries, patch size), tests (changes tests and source).
    Only commits not seen before are examined, unless --rescore.
    """
    from cra.harness.mine import mine_repo

    start, end = parse_date(since, "--since"), parse_date(until, "--until")
    if start and end and start > end:
        raise UsageError("--since is after --until")
    with writing(ctx, "cra harness mine", repo=repo) as workspace:
        result = mine_repo(workspace, repo, since=start, until=end, rescore=rescore)
    data = result.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{repo}: {data['commits_in']} commits ({result.new} new, {result.rescored} rescored), "
        f"{result.qualified} qualifying ({data['yield_pct']}%)"
    )
    # MineResult.as_dict() maps each stage to its drop count and to its top reasons.
    dropped = cast(dict[str, int], data["dropped"])
    top_reasons = cast(dict[str, dict[str, int]], data["reasons"])
    for stage in ("structural", "message", "size", "tests"):
        reasons = ", ".join(f"{r} ×{n}" for r, n in top_reasons[stage].items())
        click.echo(f"  dropped at {stage:<10} {dropped[stage]:>6}  {reasons}")


@harness.command("status")
@click.option("--repo", "repo", default=None, help="Only this repository.")
@json_option("Print as JSON.")
@pass_context
def status(ctx: Context, repo: str | None, as_json: bool) -> None:
    """The funnel of every mined repository, plan alignment per planner, and the
    verified yield of validation."""
    workspace = ctx.workspace()
    with closing(workspace.raw_db()) as conn:
        funnels = funnel(conn, repo)
        plans = planner_alignments(conn, repo)
        yields = verified_yield(conn, repo)
    if as_json:
        data = {
            "funnel": [f.as_dict() for f in funnels],
            "alignment": [p.as_dict() for p in plans],
            "validation": [v.as_dict() for v in yields],
        }
        click.echo(json.dumps(data, indent=2))
        return
    if not funnels:
        click.echo("no repository mined yet: run `cra harness mine --repo NAME`")
        return
    console = Console()
    console.print(_funnel_table(funnels))
    for f in funnels:
        _echo_reasons(console, f)
    if plans:
        console.print(_alignment_table(plans))
    if yields:
        console.print(_yield_table(yields))


def _funnel_table(funnels: list[RepoFunnel]) -> Table:
    table = Table(title="commit funnel")
    for column in ("repo", "in", "structural", "message", "size", "tests", "qualifying", "yield"):
        table.add_column(column, justify="left" if column == "repo" else "right")
    for f in funnels:
        dropped = (str(f.dropped[s]) for s in ("structural", "message", "size", "tests"))
        table.add_row(f.repo, str(f.commits_in), *dropped, str(f.qualified), f"{f.yield_pct}%")
    return table


def _echo_reasons(console: Console, f: RepoFunnel) -> None:
    for stage, reasons in f.reasons.items():
        if reasons:
            top = ", ".join(f"{r} ×{n}" for r, n in reasons.items())
            console.print(f"  {f.repo} {stage}: {top}", markup=False)
    if f.gone:
        console.print(
            f"  {f.repo} {GONE_REASON}: {f.gone} recorded commits are no longer "
            "in the package's history (re-packed); they are never planned or validated",
            markup=False,
        )


def _alignment_table(plans: list[PlannerAlignment]) -> Table:
    table = Table(title="plan alignment")
    for column in ("repo", "planner", "plans", "invalid", "mean alignment"):
        table.add_column(column)
    for a in plans:
        mean = f"{a.mean_alignment:.3f}" if a.mean_alignment is not None else "n/a"
        table.add_row(a.repo, a.planner, str(a.plans), str(a.invalid), mean)
    return table


def _yield_table(yields: list[RepoYield]) -> Table:
    table = Table(title="validation (latest verdict per task)")
    for column in ("repo", "validated", "verified", "yield", "verdicts"):
        table.add_column(column)
    for v in yields:
        verdicts = ", ".join(f"{k} ×{n}" for k, n in v.verdicts.items())
        share = "n/a" if v.yield_pct is None else f"{v.yield_pct}%"
        table.add_row(v.repo, str(v.validated), str(v.verified), share, verdicts)
    return table
