"""The `cra` command line: parse, call one function, print.

This is the one error boundary: a CraError becomes one line with a hint and a non-zero
exit code; anything else is a bug and keeps its traceback. `--debug` (or CRA_DEBUG=1)
shows the traceback of a CraError too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cra import __version__
from cra.commands import Context
from cra.errors import CraError
from cra.text import printable

MIN_PYTHON = (3, 11, 4)
"""The oldest Python cra runs on: 3.11.4 brought `tarfile`'s extraction filters, which
every import and environment build relies on."""


def python_problem(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> str | None:
    """Why cra cannot run on Python `version` (None when it can)."""
    if tuple(version[:3]) >= MIN_PYTHON:
        return None
    have = ".".join(str(v) for v in version[:3])
    need = ".".join(str(v) for v in MIN_PYTHON)
    return f"cra needs Python {need} or newer (tarfile extraction filters); this is {have}"


def _debug_from_env() -> bool:
    return os.environ.get("CRA_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def report_error(exc: CraError) -> None:
    """Print a CraError as one line, its details (one line each) and its hint, on stderr
    (control characters of repository text in it escaped)."""
    click.secho(f"error: {printable(str(exc))}", fg="red", err=True)
    for line in exc.details:
        click.echo(f"  {printable(line)}", err=True)
    if exc.hint:
        click.echo(f"hint: {printable(exc.hint)}", err=True)


class CraGroup(click.Group):
    """A click group that turns CraError into a one-line message and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CraError as exc:
            obj = ctx.find_object(Context)
            if (obj.debug if obj else False) or _debug_from_env():
                raise
            report_error(exc)
            ctx.exit(exc.exit_code)


@click.group(cls=CraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cra")
@click.option(
    "--workspace",
    "-w",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Workspace directory. Default: $CRA_HOME, else the nearest parent holding "
    "cra.toml, else the current directory.",
)
@click.option("--debug", is_flag=True, default=False, help="Show tracebacks (also CRA_DEBUG=1).")
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    default=False,
    help="Show no progress or notices on stderr (errors and warnings still show).",
)
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, debug: bool, quiet: bool) -> None:
    """cra: turn real commits into verified tasks, logs into training data, data into
    LoRA adapters, and serve them back to the agent, on one machine, offline.

    Every command works on a workspace (see --workspace); `cra init` creates one.
    """
    ctx.obj = Context(workspace, debug or _debug_from_env(), quiet)


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.pass_obj
def init(obj: Context, path: Path | None) -> None:
    """Create a workspace at PATH (default: the resolved workspace), idempotently.

    Writes cra.toml with every setting at its default, the folders repos/ db/ harness/
    planning/ training/ adapters/, and the databases. Nothing that exists is overwritten.
    """
    from cra.workspace import init_workspace, resolve_root

    report = init_workspace(path if path is not None else resolve_root(obj.workspace_path))
    root = report.workspace.root
    if not report.created:
        click.echo(f"workspace {root} is already complete; nothing to do")
        return
    click.echo(f"initialised workspace {root}")
    for created in report.created:
        rel = created.relative_to(root) if created != root else Path(".")
        click.echo(f"  created {rel}")


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path), default="cra-demo")
def demo(path: Path) -> None:
    """Run the whole flow on a bundled sample repository, in a workspace at PATH.

    PATH defaults to ./cra-demo. Re-running reuses what is already there.
    """
    from cra.demo import run_demo

    run_demo(path, echo=click.echo)


# Command groups, one module each under cra/commands/.
from cra.commands.adapter import adapter  # noqa: E402
from cra.commands.curate import curate_data, train_plan  # noqa: E402
from cra.commands.dashboard import dashboard  # noqa: E402
from cra.commands.env import env as _env_group  # noqa: E402
from cra.commands.harness import harness  # noqa: E402
from cra.commands.harness_export import export_command, import_command  # noqa: E402
from cra.commands.harness_run import run_command  # noqa: E402
from cra.commands.harness_runs import runs as _runs_group  # noqa: E402
from cra.commands.harness_tasks import commits_command, tasks_group  # noqa: E402
from cra.commands.harness_validate import grade_command, validate_command  # noqa: E402
from cra.commands.loop import loop  # noqa: E402
from cra.commands.repo import repo as _repo_group  # noqa: E402
from cra.commands.repo_remove import remove_command  # noqa: E402
from cra.commands.report import report  # noqa: E402
from cra.commands.serve import serve  # noqa: E402
from cra.commands.train import train  # noqa: E402

for _command in (
    run_command,
    validate_command,
    grade_command,
    _runs_group,
    tasks_group,
    commits_command,
):
    harness.add_command(_command)
harness.add_command(export_command)
harness.add_command(import_command)
_repo_group.add_command(remove_command)
for _group in (
    _repo_group,
    _env_group,
    harness,
    serve,
    train_plan,
    curate_data,
    train,
    adapter,
    report,
    dashboard,
    loop,
):
    cli.add_command(_group)


def main(argv: list[str] | None = None) -> None:
    """Console entry point; refuses, in one line, a Python older than :data:`MIN_PYTHON`."""
    problem = python_problem()
    if problem is not None:
        click.echo(f"error: {problem}", err=True)
        raise SystemExit(1)
    cli.main(args=argv, prog_name="cra")


if __name__ == "__main__":
    main(sys.argv[1:])
