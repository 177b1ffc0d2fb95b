"""`cra harness`: mine commits into tasks, plan and score them, show the funnel."""

from __future__ import annotations

import json
from contextlib import closing
from typing import cast

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, parse_date, require_repo
from cra.commands.output import TextTable, echo_table, top_counts
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
    """Run the history of the package named by --repo through the commit funnel and
    record every verdict.

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
    # MineResult.as_dict() maps each stage to its drop count and to every reason's count.
    dropped = cast(dict[str, int], data["dropped"])
    reasons = cast(dict[str, dict[str, int]], data["reasons"])
    for stage in ("structural", "message", "size", "tests"):
        click.echo(f"  dropped at {stage:<10} {dropped[stage]:>6}  {top_counts(reasons[stage])}")


@harness.command("status")
@click.option("--repo", "repo", default=None, help="Only this repository.")
@json_option("Print as JSON.")
@pass_context
def status(ctx: Context, repo: str | None, as_json: bool) -> None:
    """The funnel of every mined repository, plan alignment per planner, and the
    verified yield of validation."""
    workspace = ctx.workspace()
    if repo is not None:
        require_repo(workspace, repo)
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
        named = repo or "NAME"
        what = f"{repo} has not been mined yet" if repo else "no repository mined yet"
        click.echo(f"{what}: run `cra harness mine --repo {named}`")
        return
    echo_table(_funnel_table(funnels))
    echo_table(_reasons_table(funnels))
    if plans:
        echo_table(_alignment_table(plans))
    if yields:
        echo_table(_yield_table(yields))


def _funnel_table(funnels: list[RepoFunnel]) -> TextTable:
    columns = ("repo", "in", "structural", "message", "size", "tests", "qualifying", "yield")
    rows = tuple(
        (
            f.repo,
            str(f.commits_in),
            *(str(f.dropped[s]) for s in ("structural", "message", "size", "tests")),
            str(f.qualified),
            f"{f.yield_pct}%",
        )
        for f in funnels
    )
    return TextTable("commit funnel", columns, rows)


def _reasons_table(funnels: list[RepoFunnel]) -> TextTable:
    """Each stage's top reasons ("and N more": --json has them all), and the commits
    gone from the history."""
    rows: list[tuple[str, ...]] = []
    for f in funnels:
        rows += [(f.repo, s, top_counts(r)) for s, r in f.reasons.items() if r]
        if f.gone:
            gone = f"{f.gone} recorded commits no longer in the history (re-packed)"
            rows.append((f.repo, GONE_REASON, gone))
    return TextTable("reasons dropped", ("repo", "stage", "reasons"), tuple(rows), left=3)


def _alignment_table(plans: list[PlannerAlignment]) -> TextTable:
    rows = tuple(
        (
            a.repo,
            a.planner,
            str(a.plans),
            str(a.invalid),
            f"{a.mean_alignment:.3f}" if a.mean_alignment is not None else "n/a",
        )
        for a in plans
    )
    columns = ("repo", "planner", "plans", "invalid", "mean alignment")
    return TextTable("plan alignment", columns, rows, left=2)


def _yield_table(yields: list[RepoYield]) -> TextTable:
    rows = tuple(
        (
            v.repo,
            str(v.validated),
            str(v.verified),
            "n/a" if v.yield_pct is None else f"{v.yield_pct}%",
            ", ".join(f"{k} ×{n}" for k, n in v.verdicts.items()),
        )
        for v in yields
    )
    columns = ("repo", "validated", "verified", "yield", "verdicts")
    return TextTable("validation (latest verdict per task)", columns, rows)
