"""`cra env`: offline environments of repo packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cra.commands import Context, pass_context
from cra.commands.guard import writing
from cra.commands.options import json_option, unsafe_option
from cra.commands.output import echo_safe, notice

if TYPE_CHECKING:
    from cra.env.build import BuiltEnv
    from cra.workspace import Workspace


@click.group("env")
def env() -> None:
    """Offline virtualenvs built from a repo package's packages/ only."""


def _build_all(
    workspace: Workspace,
    name: str,
    env_id: str | None,
    build_all: bool,
    installer: str | None,
    project_dir: Path | None,
    as_json: bool,
) -> list[BuiltEnv]:
    from cra.env.build import build_env
    from cra.repos.layout import require_package
    from cra.repos.manifest import load_manifest

    if build_all:
        manifest = load_manifest(require_package(workspace.repos_dir, name).manifest_path)
        ids: list[str | None] = [e.id for e in manifest.environments if e.usable]
        for e in manifest.environments:
            if not e.usable:
                skipped = f"environment {e.id} of {name} skipped: unusable ({e.unusable})"
                notice(skipped)
    else:
        ids = [env_id]
    return [
        build_env(
            workspace,
            name,
            env_id=i,
            installer=installer,
            project_dir=project_dir,
            echo=None if as_json else echo_safe,
        )
        for i in ids
    ]


@env.command("build")
@click.argument("name")
@click.option("--env", "env_id", default=None, help="Environment id (default: the newest).")
@click.option("--all", "build_all", is_flag=True, help="Build every environment of NAME.")
@click.option(
    "--installer",
    type=click.Choice(["uv", "pip"]),
    default=None,
    help="Installer (default: env.installer of cra.toml).",
)
@click.option(
    "--project-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Refused: the project is never built on the host (each commit's tree is built "
    "in the sandbox before its tests).",
)
@json_option("Print the result as JSON.")
@pass_context
def build_command(
    ctx: Context,
    name: str,
    env_id: str | None,
    build_all: bool,
    installer: str | None,
    project_dir: Path | None,
    as_json: bool,
) -> None:
    """Build (or reuse) the environment of package NAME, with no network."""
    with writing(ctx, "cra env build") as workspace:
        results = _build_all(workspace, name, env_id, build_all, installer, project_dir, as_json)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "package": r.package,
                        "environment": r.env_id,
                        "path": str(r.path),
                        "key": r.key,
                        "cached": r.cached,
                        "installer": r.installer,
                        "mode": r.mode,
                        "wheels": r.wheels,
                        "python": r.python_version,
                        "seconds": round(r.seconds, 3),
                        "test_argv": r.test_argv(),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
        return
    for r in results:
        what = "reused" if r.cached else f"built with {r.installer}"
        click.echo(
            f"environment {r.env_id} of {r.package} {what} in {r.seconds:.2f}s: {r.path} "
            f"({r.wheels} wheels, Python {r.python_version}, {r.mode})"
        )


@env.command("prove")
@click.argument("name")
@unsafe_option("Collect outside any sandbox (unsafe).")
@click.option(
    "--adjust",
    is_flag=True,
    help="On a connected machine: re-pin an era whose collection fails inside an installed "
    "dependency, with that dependency at the interpreter's tools date, and prove it again.",
)
@json_option("Print the proofs as JSON.")
@pass_context
def prove_command(ctx: Context, name: str, unsafe: bool, adjust: bool, as_json: bool) -> None:
    """Prove that each environment of package NAME runs its era's tests: build it and
    collect the tests of the era's last commit in the sandbox (`pytest --collect-only`).
    Each proof is kept with its environment, so it is made once; then say which share of
    the qualifying commits (after `cra harness mine`) lands in an environment that
    collects."""
    from dataclasses import asdict

    from cra.harness.prove import adjust_failing, collecting_share, prove_package

    say = None if as_json else echo_safe
    with writing(ctx, "cra env prove") as workspace:
        proofs = prove_package(workspace, name, allow_unsafe=unsafe, echo=say)
        if adjust:
            proofs = adjust_failing(workspace, name, proofs, allow_unsafe=unsafe, echo=say)
        share = collecting_share(workspace, name, proofs)
    if as_json:
        data = {"proofs": [asdict(p) for p in proofs], "share": asdict(share)}
        click.echo(json.dumps({**data, "collecting_pct": share.percent()}, indent=2))
        return
    if share.qualifying:
        click.echo(
            f"{share.collecting} of {share.qualifying} qualifying commits "
            f"({share.percent()}%) land in an environment that collects; "
            f"{share.unusable} in an unusable era, {share.unproven} in one that does not collect"
        )
