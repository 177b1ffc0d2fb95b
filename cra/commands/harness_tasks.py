"""`cra harness tasks list/show` and `cra harness commits`: look at the tasks, their
verdicts and the funnel commit by commit, without SQL."""

from __future__ import annotations

import json
from contextlib import closing

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option, parse_date
from cra.commands.output import TextTable, echo_safe, echo_table
from cra.harness.commit_views import COMMIT_STAGES, commit_lines
from cra.harness.task_detail import TaskView, ValidationView, show_task
from cra.harness.task_views import VERDICT_FILTERS, list_tasks


@click.group("tasks")
def tasks_group() -> None:
    """Look at the tasks mining made: one line each, or one in full."""


@tasks_group.command("list")
@click.option("--repo", "repo", default=None, help="Only this repository's tasks.")
@click.option(
    "--verdict",
    default=None,
    metavar="VERDICT",
    help=f"Only tasks whose latest validation verdict is this: {', '.join(VERDICT_FILTERS)}.",
)
@click.option("--since", default=None, help="Only tasks of commits authored on or after this date.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N tasks.")
@json_option("Print the tasks as JSON.")
@pass_context
def list_command(
    ctx: Context,
    repo: str | None,
    verdict: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """One line per task, oldest commit first: task id, repository, commit date, latest
    validation verdict (or "not validated"), FAIL_TO_PASS tests, gold files (the non-test
    source files the commit changes until a planning run computed the gold), and the
    first line of the task text."""
    start = parse_date(since, "--since")
    with closing(ctx.workspace().raw_db()) as conn:
        lines = list_tasks(conn, repo=repo, verdict=verdict, since=start, limit=limit)
    if as_json:
        click.echo(json.dumps([line.as_dict() for line in lines], indent=2))
        return
    if not lines:
        click.echo("no task matches: mine and validate with `cra harness run --repo NAME`")
        return
    columns = ("task", "repo", "date", "verdict", "F2P", "gold", "task text")
    rows = tuple(
        (
            t.task_id,
            t.repo,
            t.authored_at[:10],
            t.verdict or "not validated",
            str(t.fail_to_pass),
            str(t.gold_files),
            t.title,
        )
        for t in lines
    )
    echo_table(TextTable("tasks", columns, rows, left=4))


@tasks_group.command("show")
@click.argument("task_id")
@click.option("--diff", "with_diff", is_flag=True, help="The commit's diff: source, then tests.")
@click.option(
    "--tests", "with_tests", is_flag=True, help="List FAIL_TO_PASS, PASS_TO_PASS, flaky tests."
)
@click.option(
    "--log", "with_log", is_flag=True, help="Each run's output tail of the latest validation."
)
@json_option("Print the task as JSON.")
@pass_context
def show_command(
    ctx: Context, task_id: str, with_diff: bool, with_tests: bool, with_log: bool, as_json: bool
) -> None:
    """Everything recorded about TASK_ID (REPO@SHA12): its text, gold files and symbols,
    commit and parent, each validation (verdict, run, when, environment) with its test
    counts (the tests themselves with --tests), the grades of patches, and the plans made
    for it with their scores.

    Validation keeps no log files (each run's scratch is removed): --log shows the output
    tail each run recorded with the verdict. Grades keep their logs: see `cra harness grade`.
    """
    workspace = ctx.workspace()
    with closing(workspace.raw_db()) as conn:
        view = show_task(conn, workspace.repos_dir, task_id, diff=with_diff, log=with_log)
    if as_json:
        click.echo(json.dumps(view.as_dict(tests=with_tests), indent=2))
        return
    _echo_task(view, with_tests)


def _echo_task(view: TaskView, with_tests: bool) -> None:
    echo_safe(f"{view.task_id}  {view.repo}  {view.authored_at}")
    echo_safe(f"commit {view.sha}\nparent {view.parent or '(none)'}\n")
    echo_safe("\n".join(f"    {line}" for line in view.task_text.splitlines()) + "\n")
    gold = "gold" if view.gold_computed else "source files changed (gold not computed yet)"
    echo_safe(f"{gold}: {', '.join(view.gold_files or view.files_source) or '(none)'}")
    for symbol in view.gold_symbols:
        echo_safe(f"  {symbol}")
    echo_safe(f"test files changed: {', '.join(view.files_tests) or '(none)'}")
    if not view.validations:
        click.echo("validation: not validated")
    for v in view.validations:
        _echo_validation(v, with_tests and v is view.latest)
    for g in view.grades:
        echo_safe(f"grade (run {g.run_id}, {g.created_at}): {g.verdict} [{g.label}] {g.report}")
    for p in view.plans:
        score = "n/a" if p.alignment is None else f"{p.alignment:.3f}"
        state = "valid" if p.valid else f"invalid: {p.error}"
        echo_safe(f"plan {p.id} (run {p.run_id}) {p.planner} t={p.temperature}: {score} {state}")
    if view.log is not None:
        _echo_log(view)
    if view.diff is not None:
        echo_safe(f"\n--- source diff ---\n{view.diff.source}--- tests diff ---\n{view.diff.tests}")


def _echo_validation(v: ValidationView, with_tests: bool) -> None:
    echo_safe(
        f"validation (run {v.run_id}, {v.created_at}): {v.verdict} in {v.env_id or '?'} "
        f"[{v.env_fingerprint or '-'}] under {v.isolation or '?'}: "
        f"FAIL_TO_PASS {len(v.fail_to_pass)}, PASS_TO_PASS {len(v.pass_to_pass)}, "
        f"flaky {len(v.flaky)}" + (f"\n  {v.note}" if v.note else "")
    )
    if with_tests:
        for name, tests in (
            ("FAIL_TO_PASS", v.fail_to_pass),
            ("PASS_TO_PASS", v.pass_to_pass),
            ("flaky", v.flaky),
        ):
            echo_safe(f"  {name}:" + "".join(f"\n    {t}" for t in tests))


def _echo_log(view: TaskView) -> None:
    log = view.log
    if log is None:
        return
    echo_safe(f"\nlog of the latest validation (run {log.run_id}): {log.verdict}")
    if log.error:
        echo_safe(f"  error: {log.error}")
    for run in log.runs:
        echo_safe(
            f"--- {run.phase} {run.attempt}: {run.tests} tests, exit {run.exitstatus}"
            + (f", {run.problem}" if run.problem else "")
            + " ---"
        )
        for node, message in run.collect_errors:
            echo_safe(f"  cannot collect {node}: {message}")
        echo_safe(run.tail)


@click.command("commits")
@click.option("--repo", "repo", required=True, help="Repository package name.")
@click.option(
    "--stage",
    default=None,
    metavar="STAGE",
    help=f"Only commits that ended at this stage: {', '.join(COMMIT_STAGES)}.",
)
@click.option("--dropped", is_flag=True, help="Only commits the funnel dropped.")
@click.option("--reason", default=None, help="Only commits whose drop reason contains TEXT.")
@json_option("Print the commits as JSON.")
@pass_context
def commits_command(
    ctx: Context,
    repo: str,
    stage: str | None,
    dropped: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Per mined commit of the repository, oldest first: the funnel stage it reached
    (the stage that dropped it, or `qualified`) and why it was dropped. Commits a
    re-pack took out of the history are marked gone."""
    with closing(ctx.workspace().raw_db()) as conn:
        lines = commit_lines(conn, repo, stage=stage, dropped=dropped, reason=reason)
    if as_json:
        click.echo(json.dumps([line.as_dict() for line in lines], indent=2))
        return
    if not lines:
        click.echo(f"no commit of {repo} matches")
        return
    columns = ("sha", "date", "stage", "reason", "subject")
    rows = tuple(
        (
            c.sha[:12],
            c.authored_at[:10],
            c.stage + (" (gone)" if c.gone else ""),
            c.reason or "",
            c.subject,
        )
        for c in lines
    )
    echo_table(TextTable(f"commits of {repo}", columns, rows, left=5))
