"""`cra repo`: pack, verify, import and list repo packages."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cra.commands import Context, pass_context


@click.group("repo")
def repo() -> None:
    """Repo packages: repos/NAME/{repo/, packages/, manifest.json}."""


@repo.command("pack")
@click.argument("source")
@click.option("--name", required=True, help="Package name (folder under repos/).")
@click.option("--ref", default=None, help="Branch, tag or commit to pack. Default: HEAD.")
@click.option("--python", "python", default=None, help="Target Python X.Y. Default: this one.")
@click.option("--test-cmd", default=None, help="Test command, when none is detected.")
@click.option("--extra", "extras", multiple=True, help="Extra of the project to include.")
@click.option("--group", "groups", multiple=True, help="PEP 735 dependency group to include.")
@click.option("--requirement", "requirements", multiple=True, help="Another requirement.")
@click.option(
    "--find-links",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Local folder of wheels/sdists; with it the index is not used unless --index.",
)
@click.option("--index/--no-index", "use_index", default=None, help="Use the package index.")
@click.option("--domain", default="general", show_default=True, help="Domain tag.")
@click.option(
    "--era-months",
    type=click.IntRange(min=1),
    default=None,
    help="Months per era (default: repos.era_months of cra.toml).",
)
@click.option("--single-env", is_flag=True, help="One environment for the whole history.")
@click.option(
    "--install-mode",
    type=click.Choice(["auto", "pythonpath", "editable", "installed"]),
    default="auto",
    show_default=True,
    help="How the project becomes importable in its environment.",
)
@click.option("--replace", is_flag=True, help="Replace an existing package of that name.")
@pass_context
def pack_command(
    ctx: Context,
    source: str,
    name: str,
    ref: str | None,
    python: str | None,
    test_cmd: str | None,
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    requirements: tuple[str, ...],
    find_links: Path | None,
    use_index: bool | None,
    domain: str,
    era_months: int | None,
    single_env: bool,
    install_mode: str,
    replace: bool,
) -> None:
    """Pack SOURCE (a local git repository or a URL) as repos/NAME/ with every wheel it
    needs, one environment per era of its history."""
    from cra.repos.pack import PackOptions, pack

    options = PackOptions(
        name=name,
        ref=ref,
        python=python,
        test_cmd=test_cmd,
        extras=extras,
        groups=groups,
        requirements=requirements,
        find_links=find_links,
        use_index=use_index,
        domain=domain,
        era_months=era_months,
        single_env=single_env,
        install_mode=install_mode,
        replace=replace,
    )
    result = pack(ctx.workspace(), source, options, echo=click.echo)
    m = result.manifest
    click.echo(
        f"packed {m.name}: {result.commits} commits, head {m.head[:12]}, "
        f"{len(m.environments)} environments, {len(m.wheels)} wheels "
        f"({result.wheels_copied} copied, {result.wheels_downloaded} downloaded, "
        f"{result.wheels_built} built) in {result.seconds:.1f}s"
    )
    for env in m.environments:
        span = f"  env {env.id}: {env.start or '…'} to {env.until or '…'}, "
        if not env.usable:
            click.echo(f"{span}unusable: {env.unusable}")
            continue
        retried = f", after {len(env.attempts) - 1} failed tries" if env.attempts else ""
        click.echo(f"{span}{len(env.requirements)} pins, date bound {env.date_bound}{retried}")
    click.echo(f"  importable: {m.importable['mode']} {' '.join(m.importable['pythonpath'])}")
    click.echo(f"  tests: {m.test['command']}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@repo.command("verify")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@pass_context
def verify_command(ctx: Context, name: str, as_json: bool) -> None:
    """Check every checksum, the manifest schema and `git fsck` of package NAME."""
    from cra.repos.layout import require_package
    from cra.repos.verify import clear_stamp, stamp_verified, verify_package

    workspace = ctx.workspace()
    package = require_package(workspace, name)
    report = verify_package(package.root)
    if report.ok:
        stamp_verified(workspace, package)
    else:
        clear_stamp(workspace, name)
    if as_json:
        data = {
            "name": name,
            "ok": report.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks],
        }
        click.echo(json.dumps(data, indent=2))
    else:
        for check in report.checks:
            verdict = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            click.echo(f"{verdict} {check.name}: {check.detail}")
    if not report.ok:
        report.raise_for_failure()


@repo.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Import under this name instead of the manifest's.")
@pass_context
def import_command(ctx: Context, path: Path, name: str | None) -> None:
    """Import a repo package from a folder (a mounted USB stick) or a .tar, verified first."""
    from cra.repos.importer import import_package

    result = import_package(ctx.workspace(), path, name)
    for check in result.report.checks:
        click.echo(f"ok   {check.name}: {check.detail}")
    click.echo(f"imported {result.manifest.name} into {result.package.root}")


@repo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@pass_context
def list_command(ctx: Context, as_json: bool) -> None:
    """Every package: commits, environments, wheels, size, verified or not."""
    from cra.repos.listing import list_packages

    packages = list_packages(ctx.workspace())
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in packages], indent=2))
        return
    if not packages:
        click.echo("no repo packages; add one with `cra repo pack` or `cra repo import`")
        return
    click.echo(f"{'name':<20} {'commits':>7} {'envs':>4} {'wheels':>6} {'size':>9}  state")
    for p in packages:
        size = f"{p.size_bytes / 1e6:.1f} MB"
        dash = "-"
        click.echo(
            f"{p.name:<20} {p.commits if p.commits is not None else dash:>7} "
            f"{p.environments if p.environments is not None else dash:>4} "
            f"{p.wheels if p.wheels is not None else dash:>6} {size:>9}  {p.state}"
            + (f" ({p.problem})" if p.problem else "")
            + (f", {len(p.unusable)} unusable era(s)" if p.unusable else "")
        )
        for era in p.unusable:
            click.echo(f"  unusable era {era[:300]}")
