"""`cra harness run`: plan every qualifying commit and score the plans."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, parse_date, unsafe_option
from cra.commands.output import counted_progress, echo_plan_summary, echo_summary
from cra.commands.validation import run_validation
from cra.errors import UsageError
from cra.repos.layout import require_package
from cra.sandbox import SLOTS

if TYPE_CHECKING:
    from cra.workspace import Workspace

MAX_JOBS = SLOTS  # each concurrent sandboxed run as root takes a uid slot
"""The most commits `--jobs` runs at once."""


@click.command("run")
@click.option(
    "--repo", "repo", required=True, help="Repository package name (see `cra repo list`)."
)
@click.option(
    "--planner",
    type=click.Choice(["baseline", "llm"]),
    default="baseline",
    show_default=True,
    help="baseline: retrieval only, no model. llm: the [llm] endpoint of cra.toml.",
)
@click.option(
    "--temperatures",
    default="0.2",
    show_default=True,
    help="Comma-separated sampling temperatures; the llm planner plans once per value.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Plan at most N commits not planned yet (planned ones are skipped, not counted).",
)
@click.option("--since", default=None, help="Only commits authored on or after this date.")
@click.option(
    "--jobs",
    type=click.IntRange(1, MAX_JOBS),
    default=1,
    show_default=True,
    help="Commits in parallel.",
)
@click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Then validate the same commits with their tests (see `cra harness validate`).",
)
@unsafe_option()
@json_option("Print the run summary as JSON.")
@pass_context
def run_command(
    ctx: Context,
    repo: str,
    planner: str,
    temperatures: str,
    limit: int | None,
    since: str | None,
    jobs: int,
    validate: bool,
    unsafe: bool,
    as_json: bool,
) -> None:
    """Plan each qualifying commit of REPO and score the plan against the real diff.

    Per commit, oldest first: check out the parent (no later history), index it with
    tree-sitter, retrieve with BM25 (reranked by the active scope-ranker version when
    cra.toml sets [retrieve] ranker = "learned"), plan, score plan-diff alignment, record
    it all in raw.db. Then (unless --no-validate) run each commit's tests before and after it,
    sandboxed, to find the tasks its tests verify. Interrupting is safe: running again
    resumes without duplicating anything. One writing command at a time per workspace:
    a second one refuses while this one runs.
    """
    if validate:
        from cra.sandbox import require_sandbox

        # Before anything runs (git included): a run that cannot validate stops here.
        require_sandbox(ctx.workspace().config.settings.validate.sandbox_uid, allow_unsafe=unsafe)
    with writing(ctx, "cra harness run", repo=repo) as workspace:
        _run(
            ctx,
            workspace,
            repo,
            planner,
            temperatures,
            limit,
            since,
            jobs,
            validate,
            unsafe,
            as_json,
        )


def _run(
    ctx: Context,
    workspace: Workspace,
    repo: str,
    planner: str,
    temperatures: str,
    limit: int | None,
    since: str | None,
    jobs: int,
    validate: bool,
    unsafe: bool,
    as_json: bool,
) -> None:
    from cra.harness.planning import RunOptions
    from cra.harness.run import parse_temperatures, run_harness
    from cra.ranker.pipeline import pipeline_ranker

    options = RunOptions(
        planner=planner,
        temperatures=parse_temperatures(temperatures),
        limit=limit,
        since=parse_date(since, "--since"),
        jobs=jobs,
    )
    if validate:
        package = require_package(workspace.repos_dir, repo)
        if not package.manifest_path.is_file():
            raise UsageError(
                f"repos/{repo} has no manifest.json: its tests have no environment to run in",
                hint="pack it with `cra repo pack`, or plan only with --no-validate",
            )
        from cra.sandbox import require_sandbox

        # Before planning: a run that cannot validate stops here, saying what to install.
        require_sandbox(workspace.config.settings.validate.sandbox_uid, allow_unsafe=unsafe)
    ranker = pipeline_ranker(workspace, say=lambda line: click.echo(line, err=True))
    with counted_progress("planning", hidden=as_json) as progress:
        summary = run_harness(workspace, repo, options, progress=progress, ranker=ranker)
    data = summary.as_dict()
    validation = None
    if validate:
        validation = run_validation(
            ctx,
            repo,
            limit=limit,
            since=since,
            runs=None,
            unsafe=unsafe,
            force=False,
            as_json=as_json,
            jobs=jobs,
        )
        data["validation"] = validation
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    echo_plan_summary(data)
    if validation is not None:
        echo_summary(validation)
