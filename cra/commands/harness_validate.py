"""`cra harness validate` and `cra harness grade`: prove tasks with their tests, grade
patches against them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, unsafe_option
from cra.commands.output import echo_summary, notice
from cra.commands.validation import run_validation
from cra.errors import UsageError
from cra.fsutil import atomic_write_bytes
from cra.sandbox import SLOTS
from cra.text import printable


@click.command("validate")
@click.option("--repo", "repo", required=True, help="Repository package name.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Validate at most N commits without a final verdict (those with one are skipped).",
)
@click.option("--since", default=None, help="Only commits authored on or after this date.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Only N commits spread evenly over the history, oldest and newest included.",
)
@click.option("--runs", type=int, default=None, help="Runs per phase ([validate] runs).")
@click.option("--force", is_flag=True, help="Validate again tasks that already have a verdict.")
@click.option(
    "--jobs",
    type=click.IntRange(1, SLOTS),
    default=1,
    show_default=True,
    help="Commits in parallel.",
)
@unsafe_option()
@json_option("Print the summary as JSON.")
@pass_context
def validate_command(
    ctx: Context,
    repo: str,
    limit: int | None,
    sample: int | None,
    since: str | None,
    runs: int | None,
    force: bool,
    jobs: int,
    unsafe: bool,
    as_json: bool,
) -> None:
    """Run each qualifying commit's tests before and after it, sandboxed, and record
    FAIL_TO_PASS / PASS_TO_PASS and the verdict.

    Before: the parent with the commit's test files applied. After: the commit. Each
    phase runs `[validate] runs` times; tests whose outcome changes are quarantined as
    flaky. Verdicts: verified, no_fail_to_pass, tests_error, env_mismatch (every test
    failed before and after: the environment cannot run them; retried when the era is
    re-packed), and the infrastructure failures env_failed, env_unusable (the era has no
    environment), timeout, sandbox_failed, bad_report (the tests left a report that
    cannot be read or trusted), harness_failed (cra could not prepare or run the commit,
    e.g. git cannot read it). Tasks with a verdict are skipped unless --force;
    infrastructure failures are retried by the next run, twice in all with the same
    environment, then final. Where no sandbox can run it stops before running anything,
    saying what to install (or use --unsafe-no-sandbox).
    """
    from cra.sandbox import require_sandbox

    # Before anything runs (git included): no sandbox stops here, saying what to install.
    require_sandbox(ctx.workspace().config.settings.validate.sandbox_uid, allow_unsafe=unsafe)
    with writing(ctx, "cra harness validate", repo=repo):
        data = run_validation(
            ctx,
            repo,
            limit=limit,
            since=since,
            runs=runs,
            unsafe=unsafe,
            force=force,
            as_json=as_json,
            jobs=jobs,
            sample=sample,
        )
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        echo_summary(data)


@click.command("grade")
@click.argument("task_id")
@click.option(
    "--patch",
    "patch_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    help="Patch file to grade ('-' for stdin).",
)
@click.option("--gold", is_flag=True, help="Grade the task's own commit (minus its tests).")
@click.option("--runs", type=int, default=1, show_default=True, help="Runs of the tests.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the grade's report.json to FILE.",
)
@unsafe_option()
@json_option("Print the grade as JSON.")
@pass_context
def grade_command(
    ctx: Context,
    task_id: str,
    patch_path: Path | None,
    gold: bool,
    runs: int,
    report_path: Path | None,
    unsafe: bool,
    as_json: bool,
) -> None:
    """Apply a patch to TASK_ID's parent plus its tests and grade it: resolved when every
    FAIL_TO_PASS and PASS_TO_PASS test passes.

    Each grade keeps, as SWE-bench's evaluation does, a folder
    harness/grades/TASK_ID/RUN_ID/ with report.json (resolved or not, the FAIL_TO_PASS
    and PASS_TO_PASS tests that passed and failed), the patch and each test run's
    output; where, it says on stderr (in the JSON with --json). Exits 1 when the patch
    does not resolve the task."""
    from cra.harness.grading import grade_patch, task_gold_patch

    if gold == (patch_path is not None):
        raise UsageError("give exactly one of --patch FILE and --gold")
    with writing(ctx, "cra harness grade") as workspace:
        if patch_path is None:  # --gold, as checked above
            patch, label = task_gold_patch(workspace, task_id), "gold"
        elif str(patch_path) == "-":
            patch, label = sys.stdin.read(), "patch"
        else:
            try:
                patch = Path(patch_path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read patch {patch_path}: {exc}") from None
            label = "patch"
        grade = grade_patch(workspace, task_id, patch, runs=runs, allow_unsafe=unsafe, label=label)
    if grade.report is not None:
        if not as_json:  # the JSON names it ("report"); --json hides notices
            notice(f"report and test logs: {grade.report.parent}")
        if report_path is not None:
            try:
                atomic_write_bytes(report_path, grade.report.read_bytes())
            except OSError as exc:
                raise UsageError(f"cannot write the report to {report_path}: {exc}") from None
    if as_json:
        click.echo(json.dumps(grade.as_dict(), indent=2))
        return
    f2p = sum(o == "passed" for o in grade.fail_to_pass.values())
    p2p = sum(o == "passed" for o in grade.pass_to_pass.values())
    click.echo(
        f"{task_id}: {grade.verdict} (FAIL_TO_PASS {f2p}/{len(grade.fail_to_pass)} passed, "
        f"PASS_TO_PASS {p2p}/{len(grade.pass_to_pass)} passed, {grade.isolation})"
    )
    if grade.detail:
        click.echo(f"  {printable(grade.detail.strip().splitlines()[-1])}")
    if grade.verdict != "resolved":
        raise SystemExit(1)
