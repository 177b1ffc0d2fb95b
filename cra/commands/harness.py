"""`cra harness`: mine commits into tasks, plan and score them, show the funnel."""

from __future__ import annotations

import json
from contextlib import closing

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, parse_date
from cra.errors import UsageError
from cra.harness.reconcile import GONE_REASON


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
    for stage in ("structural", "message", "size", "tests"):
        reasons = ", ".join(f"{r} ×{n}" for r, n in data["reasons"][stage].items())  # type: ignore[index]
        click.echo(f"  dropped at {stage:<10} {data['dropped'][stage]:>6}  {reasons}")  # type: ignore[index]


@harness.command("status")
@click.option("--repo", "repo", default=None, help="Only this repository.")
@json_option("Print as JSON.")
@pass_context
def status(ctx: Context, repo: str | None, as_json: bool) -> None:
    """The funnel of every mined repository, plan alignment per planner, and the
    verified yield of validation."""
    from rich.console import Console
    from rich.table import Table

    from cra.db.plans import planner_alignments
    from cra.harness.mine import funnel
    from cra.harness.yields import verified_yield

    workspace = ctx.workspace()
    with closing(workspace.raw_db()) as conn:
        rows = [f.as_dict() for f in funnel(conn, repo)]
        plans = planner_alignments(conn, repo)
        validation = [v.as_dict() for v in verified_yield(conn, repo)]
    alignment = [p.as_dict() for p in plans]
    if as_json:
        click.echo(
            json.dumps({"funnel": rows, "alignment": alignment, "validation": validation}, indent=2)
        )
        return
    if not rows:
        click.echo("no repository mined yet: run `cra harness mine --repo NAME`")
        return
    table = Table(title="commit funnel")
    for column in ("repo", "in", "structural", "message", "size", "tests", "qualifying", "yield"):
        table.add_column(column, justify="left" if column == "repo" else "right")
    for row in rows:
        d = row["dropped"]
        table.add_row(
            str(row["repo"]), str(row["commits_in"]),
            *(str(d[s]) for s in ("structural", "message", "size", "tests")),  # type: ignore[index]
            str(row["qualified"]), f"{row['yield_pct']}%",
        )  # fmt: skip
    console = Console()
    console.print(table)
    for row in rows:
        for stage, reasons in row["reasons"].items():  # type: ignore[union-attr]
            if reasons:
                top = ", ".join(f"{r} ×{n}" for r, n in reasons.items())
                console.print(f"  {row['repo']} {stage}: {top}", markup=False)
        if row.get("gone"):
            console.print(
                f"  {row['repo']} {GONE_REASON}: {row['gone']} recorded commits are no longer "
                "in the package's history (re-packed); they are never planned or validated",
                markup=False,
            )
    if alignment:
        plan_table = Table(title="plan alignment")
        for column in ("repo", "planner", "plans", "invalid", "mean alignment"):
            plan_table.add_column(column)
        for a in alignment:
            plan_table.add_row(
                a["repo"], a["planner"], str(a["plans"]), str(a["invalid"]),
                f"{a['mean_alignment']:.3f}",
            )  # fmt: skip
        console.print(plan_table)
    if validation:
        v_table = Table(title="validation (latest verdict per task)")
        for column in ("repo", "validated", "verified", "yield", "verdicts"):
            v_table.add_column(column)
        for v in validation:
            verdicts = ", ".join(f"{k} ×{n}" for k, n in v["verdicts"].items())  # type: ignore[attr-defined]
            share = "n/a" if v["yield_pct"] is None else f"{v['yield_pct']}%"
            v_table.add_row(str(v["repo"]), str(v["validated"]), str(v["verified"]), share,
                            verdicts)  # fmt: skip
        console.print(v_table)
