"""`cra repo`: pack (one repository or a corpus), verify, export, import and list repo
packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from cra.commands import Context, pass_context
from cra.commands.guard import reconcile, writing
from cra.commands.options import json_option, unsafe_option
from cra.commands.output import echo_safe, notice
from cra.text import printable

if TYPE_CHECKING:
    from cra.repos.corpus_import import ExportSource
    from cra.repos.pack import PackResult
    from cra.repos.signing import Trust
    from cra.workspace import Workspace


@click.group("repo")
def repo() -> None:
    """Repo packages: repos/NAME/{repo/, packages/, manifest.json}."""


# The options of one repository's pack; with --corpus they come from the file instead.
PER_REPO = (
    "name",
    "ref",
    "python",
    "test_cmd",
    "extras",
    "groups",
    "requirements",
    "find_links",
    "use_index",
    "domain",
    "era_months",
    "single_env",
    "install_mode",
)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return printable(str(value))


def _table(rows: list[dict[str, object]], columns: list[str], last: str) -> None:
    """Print `rows` as aligned columns, then the free-text column `last` (cut to fit)."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w)
        for i, (c, w) in enumerate(zip(columns, widths, strict=True))
    )
    click.echo(f"{line}  {last}")
    for row, values in zip(rows, cells, strict=True):
        line = "  ".join(
            v.ljust(w) if i < 2 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )
        text = printable(str(row.get("error") or row.get("note") or ""))
        text = text if len(text) <= 160 else text[:159] + "…"
        click.echo(f"{line}  {text}".rstrip())


def _progress(message: str) -> None:
    notice(message)


@repo.command("pack")
@click.argument("source", required=False)
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A TOML file listing repositories ([[repo]] tables) to pack one after another.",
)
@click.option("--name", default=None, help="Package name (folder under repos/).")
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
@click.option(
    "--replace",
    is_flag=True,
    help="Replace an existing package of that name (with --corpus: re-pack, not skip).",
)
@json_option("With --corpus: print the table as JSON.")
@unsafe_option(
    "Build dependencies' sdists with no sandbox when none is available (unsafe: their "
    "setup.py runs on this machine)."
)
@pass_context
def pack_command(
    ctx: Context,
    source: str | None,
    corpus: Path | None,
    name: str | None,
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
    as_json: bool,
    unsafe: bool,
) -> None:
    """Pack SOURCE (a local git repository or a URL) as repos/NAME/ with every wheel it
    needs, one environment per era of its history; or, with --corpus FILE, every
    repository the file lists, going on past one that fails."""
    from cra.repos.pack import PackOptions, pack

    if corpus is not None:
        _refuse_corpus_conflicts(source)
        _pack_corpus(ctx, corpus, replace=replace, as_json=as_json)
        return
    source, name = _one_repository(source, name, as_json=as_json)
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
        unsafe_no_sandbox=unsafe,
    )
    with writing(ctx, "cra repo pack") as workspace:
        result = pack(workspace, source, options, echo=echo_safe)
        reconcile(workspace, name)
    _echo_packed(result)


def _refuse_corpus_conflicts(source: str | None) -> None:
    """With --corpus: refuse SOURCE and every per-repository option given on the command
    line (the corpus file sets those)."""
    from cra.errors import UsageError

    if source is not None:
        raise UsageError(
            "give SOURCE or --corpus, not both",
            hint="a corpus file names each repository's source itself",
        )
    here = click.get_current_context()
    extra = [
        p.opts[0]
        for p in here.command.params
        if p.name in PER_REPO and here.get_parameter_source(p.name) is not ParameterSource.DEFAULT
    ]
    if extra:
        flags = ", ".join(extra)
        raise UsageError(
            f"{flags} cannot be combined with --corpus",
            hint="set it in the corpus file: in an entry, or in its [defaults] table",
        )


def _one_repository(source: str | None, name: str | None, *, as_json: bool) -> tuple[str, str]:
    """Without --corpus: SOURCE and --name are required and --json is refused; return
    (source, name)."""
    from cra.errors import UsageError

    if source is None:
        raise UsageError(
            "give SOURCE (a git repository or URL) or --corpus FILE",
            hint="cra repo pack SOURCE --name NAME, or cra repo pack --corpus corpus.toml",
        )
    if name is None:
        raise UsageError("--name is required with SOURCE", hint="name the package: --name NAME")
    if as_json:
        raise UsageError("--json goes with --corpus", hint="drop --json to pack one repository")
    return source, name


def _echo_packed(result: PackResult) -> None:
    """The summary of one pack: counts, each environment, how the project imports, its
    test command, then the warnings on stderr."""
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
            click.echo(f"{span}unusable: {printable(str(env.unusable))}")
            continue
        retried = f", after {len(env.attempts) - 1} failed tries" if env.attempts else ""
        click.echo(f"{span}{len(env.requirements)} pins, date bound {env.date_bound}{retried}")
    pythonpath = printable(" ".join(m.importable["pythonpath"]))
    click.echo(f"  importable: {m.importable['mode']} {pythonpath}")
    click.echo(f"  tests: {printable(str(m.test['command']))}")
    for warning in result.warnings:
        click.echo(f"warning: {printable(str(warning))}", err=True)


ALLOW_UNSIGNED = click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept a package that is unsigned, or signed by a key not in [repos] trusted_keys "
    "(a signature that does not verify is refused all the same).",
)


def _trust(workspace: Workspace, allow_unsigned: bool) -> Trust:
    from cra.repos.signing import Trust

    keys = workspace.config.settings.repos.trusted_keys
    return Trust.of_workspace(workspace.root, keys, allow_unsigned=allow_unsigned)


@repo.command("key")
@json_option("Print the key as JSON.")
@pass_context
def key_command(ctx: Context, as_json: bool) -> None:
    """Print this workspace's public signing key (made on first use), the one `cra repo
    pack` signs packages with: list it in [repos] trusted_keys of the cra.toml of every
    machine that imports them."""
    from cra.repos.signing import key_path, public_key_text, workspace_key

    workspace = ctx.workspace()
    public = public_key_text(workspace_key(workspace.root).public_key())
    if as_json:
        path = str(key_path(workspace.root).relative_to(workspace.root))
        click.echo(json.dumps({"public_key": public, "private_key_file": path}, indent=2))
        return
    click.echo(public)


@repo.command("verify")
@click.argument("name")
@ALLOW_UNSIGNED
@json_option("Print the verdicts as JSON.")
@pass_context
def verify_command(ctx: Context, name: str, allow_unsigned: bool, as_json: bool) -> None:
    """Check the layout, every checksum, the manifest schema and its signature, and
    `git fsck` of package NAME."""
    from cra.repos.layout import require_package
    from cra.repos.verify import clear_stamp, stamp_verified, verify_package

    workspace = ctx.workspace()
    package = require_package(workspace.repos_dir, name)
    report = verify_package(package.root, _trust(workspace, allow_unsigned))
    if report.ok:
        stamp_verified(workspace.verified_dir, package)
    else:
        clear_stamp(workspace.verified_dir, name)
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
            click.echo(f"{verdict} {check.name}: {printable(check.detail)}")
    if not report.ok:
        report.raise_for_failure()


def _pack_corpus(ctx: Context, path: Path, *, replace: bool, as_json: bool) -> None:
    from cra.repos.corpus import load_corpus, pack_corpus

    corpus = load_corpus(path)
    with writing(ctx, "cra repo pack --corpus") as workspace:
        report = pack_corpus(workspace, corpus, replace_existing=replace, echo=_progress)
        for outcome in report.outcomes:
            if outcome.status == "ok":
                reconcile(workspace, outcome.name)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        rows = [o.to_dict() for o in report.outcomes]
        _table(rows, ["name", "status", "commits", "environments", "wheels", "seconds"], "error")
        click.echo(
            f"{report.count('ok')} packed, {report.count('skipped')} skipped, "
            f"{report.count('failed')} failed of {len(report.outcomes)} in {report.seconds:.1f}s"
        )
    report.raise_for_failure()


@repo.command("export")
@click.argument("names", nargs=-1)
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write NAME/ folders into (a USB stick), or a FILE.tar.",
)
@click.option("--all", "all_", is_flag=True, help="Export every package of the workspace.")
@click.option(
    "--tar", is_flag=True, help="One tar file: --to FILE.tar, or DIR/corpus-DATE-TIME.tar."
)
@click.option("--replace", is_flag=True, help="Overwrite DIR/NAME (or the tar) if it exists.")
@json_option("Print what was exported as JSON.")
@pass_context
def export_command(
    ctx: Context,
    names: tuple[str, ...],
    to: Path,
    all_: bool,
    tar: bool,
    replace: bool,
    as_json: bool,
) -> None:
    """Verify packages NAME... and write them to a folder or a tar, with cra-index.json."""
    from cra.errors import UsageError
    from cra.repos.export import all_package_names, export_packages

    workspace = ctx.workspace()
    if all_ and names:
        raise UsageError("give NAME... or --all, not both")
    if not all_ and not names:
        raise UsageError("name the packages to export", hint="or pass --all for every package")
    wanted = all_package_names(workspace.repos_dir) if all_ else list(names)
    result = export_packages(workspace, wanted, to, tar=tar, replace=replace, echo=_progress)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for entry in result.exported:
        click.echo(
            f"exported {entry.name}: {entry.wheels} wheels, {entry.bytes / 1e6:.1f} MB, "
            f"manifest sha256 {entry.manifest_sha256[:12]}…"
        )
    where = "its first member" if result.kind == "tar" else str(result.dest / "cra-index.json")
    click.echo(
        f"{len(result.exported)} packages to {result.dest} in {result.seconds:.1f}s; "
        f"cra-index.json ({len(result.index)} packages): {where}"
    )


@repo.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Import under this name instead of the manifest's.")
@ALLOW_UNSIGNED
@json_option("Print the per-package results as JSON.")
@pass_context
def import_command(
    ctx: Context, path: Path, name: str | None, allow_unsigned: bool, as_json: bool
) -> None:
    """Import a repo package from a folder (a mounted USB stick) or a .tar, verified first;
    or every package of an export (`cra repo export`'s folder or tar) in one call. Each
    must be signed by a key in [repos] trusted_keys (or this workspace's own), unless
    --allow-unsigned."""
    from cra.errors import UsageError
    from cra.repos.corpus_import import open_export
    from cra.repos.importer import import_package

    export = open_export(path)
    if export is not None:
        if name is not None:
            raise UsageError(
                f"--name renames one package; {path} holds {len(export.packages)}",
                hint="import PATH/NAME alone to give it another --name",
            )
        with writing(ctx, "cra repo import") as workspace:
            trust = _trust(workspace, allow_unsigned)
            _import_export(workspace, export, trust=trust, as_json=as_json)
        return
    with writing(ctx, "cra repo import") as workspace:
        result = import_package(workspace, path, name, trust=_trust(workspace, allow_unsigned))
    if as_json:
        data = {
            "source": str(path),
            "kind": "package",
            "packages": [{"name": result.manifest.name, "status": "imported"}],
        }
        click.echo(json.dumps(data, indent=2))
        return
    for check in result.report.checks:
        click.echo(f"ok   {check.name}: {printable(check.detail)}")
    click.echo(f"imported {result.manifest.name} into {result.package.root}")


def _import_export(
    workspace: Workspace, export: ExportSource, *, trust: Trust, as_json: bool
) -> None:
    from cra.repos.corpus_import import import_export

    report = import_export(workspace, export, trust=trust, echo=_progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        rows = [o.to_dict() for o in report.outcomes]
        _table(rows, ["name", "status", "commits", "environments", "wheels"], "error")
        for entry in report.ignored:
            click.echo(f"ignored {entry}: not a package")
        click.echo(
            f"{report.count('imported')} imported, {report.count('present')} already present, "
            f"{report.count('failed')} failed of {len(report.outcomes)} in {report.seconds:.1f}s"
        )
    report.raise_for_failure()


@repo.command("list")
@json_option("Print the list as JSON.")
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
            + (f" ({printable(str(p.problem))})" if p.problem else "")
            + (f", {len(p.unusable)} unusable era(s)" if p.unusable else "")
        )
        for era in p.unusable:
            click.echo(f"  unusable era {printable(era[:300])}")
