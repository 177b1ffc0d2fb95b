"""`cra repo pack`: a git repository and every wheel it needs, as `repos/NAME/`.

Runs on a connected machine (or offline, from a local wheelhouse given with
`--find-links`). Steps: write REF's whole history into a fresh repository that cra
creates (only objects and refs travel from the source, nothing of its `.git`); split
the history into eras (`cra.repos.eras`); per era, read the requirements at the era's
last commit, pin them (`cra.repos.resolve`: the project's bounded by the era's end,
cra's own tools by the interpreter) and fetch one wheel per pin (`cra.repos.fetch`),
retrying a failing era with later bounds and recording an era that never works as
unusable; write `manifest.json`. Everything is written under a temporary directory in
`repos/` and renamed at the end.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from cra.config import ReposSettings, ValidateSettings
from cra.errors import CraError, UsageError
from cra.fsutil import now_iso, sha256_file
from cra.git import GitError, git
from cra.repos.clone import check_source, clone_ref, is_url
from cra.repos.eras import EraPacker, merge_environments, split_eras
from cra.repos.fetch import WheelFetcher
from cra.repos.importable import detect_layout
from cra.repos.layout import RepoPackage, check_name, package_path, register_repo
from cra.repos.manifest import Environment, Manifest, Wheel, write_manifest
from cra.repos.requirements import GitTree, RequirementSet, read_requirements
from cra.repos.resolve import Resolver, requirement_names
from cra.repos.sdist import BuildSandbox, SdistBuilder
from cra.repos.signing import sign_package, workspace_key
from cra.repos.testneeds import config_needs, era_config_trees
from cra.repos.verify import stamp_verified
from cra.repos.wheels import platform_tag
from cra.workspace import Workspace

SUPPORTED_PYTHONS = tuple(f"3.{minor}" for minor in range(8, 15))
Echo = Callable[[str], None]


@dataclass(frozen=True)
class PackOptions:
    """What `cra repo pack` was asked to do."""

    name: str
    ref: str | None = None
    python: str | None = None
    test_cmd: str | None = None
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    find_links: Path | None = None
    use_index: bool | None = None
    domain: str = "general"
    era_months: int | None = None
    single_env: bool = False
    install_mode: str = "auto"
    replace: bool = False
    unsafe_no_sandbox: bool = False


@dataclass
class PackResult:
    """What pack wrote: the package, its manifest, and counters."""

    package: RepoPackage
    manifest: Manifest
    commits: int
    wheels_copied: int = 0
    wheels_downloaded: int = 0
    wheels_built: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def check_python(python: str | None) -> str:
    """The target Python as X.Y: the running one by default; reject unsupported versions."""
    if python is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    if python not in SUPPORTED_PYTHONS:
        raise UsageError(
            f"unsupported Python version {python!r}",
            hint=f"give --python as one of {', '.join(SUPPORTED_PYTHONS)}",
        )
    return python


def _requires_python_ok(reqs: RequirementSet, python: str) -> None:
    if not reqs.requires_python:
        return
    try:
        spec = SpecifierSet(reqs.requires_python)
    except InvalidSpecifier:
        return
    if not spec.contains(f"{python}.0", prereleases=True) and not spec.contains(
        f"{python}.99", prereleases=True
    ):
        raise UsageError(
            f"the project requires Python {reqs.requires_python}, not {python}",
            hint="give a matching --python",
        )


@dataclass(frozen=True)
class _Checked:
    """The request, checked before anything is written: where and how to pack."""

    python: str
    package: RepoPackage
    find_links: Path | None
    use_index: bool
    months: int
    clone_from: str


@dataclass(frozen=True)
class _Staged:
    """What staging wrote under the temporary directory, before the rename."""

    manifest: Manifest
    head: str
    commits: int
    fetcher: WheelFetcher
    warnings: list[str]


def pack(
    workspace: Workspace, source: str, options: PackOptions, *, echo: Echo | None = None
) -> PackResult:
    """Pack `source` as `repos/NAME/` of `workspace`; nothing is left behind on failure."""
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    checked = _check_request(workspace.repos_dir, workspace.config.settings.repos, source, options)
    package = checked.package
    workspace.repos_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".pack-{options.name}-", dir=workspace.repos_dir))
    try:
        staged = _stage(workspace, source, options, checked, tmp, say)
        _install(tmp, RepoPackage(tmp / options.name), package)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with closing(workspace.raw_db()) as conn:
        register_repo(
            conn,
            options.name,
            source_url=staged.manifest.source["url"],
            head_sha=staged.head,
            domain=options.domain,
            manifest_sha256=sha256_file(package.manifest_path),
        )
    stamp_verified(workspace.verified_dir, package)
    return PackResult(
        package=package,
        manifest=staged.manifest,
        commits=staged.commits,
        wheels_copied=staged.fetcher.copied,
        wheels_downloaded=staged.fetcher.downloaded,
        wheels_built=staged.fetcher.built,
        seconds=time.perf_counter() - started,
        warnings=staged.warnings,
    )


def _check_request(
    repos_dir: Path, settings: ReposSettings, source: str, options: PackOptions
) -> _Checked:
    """Check the name, Python, target, wheelhouse and source; raise UsageError on a bad one."""
    check_name(options.name)
    python = check_python(options.python)
    package = package_path(repos_dir, options.name)
    if package.root.exists() and not options.replace:
        raise UsageError(
            f"package {options.name!r} already exists at {package.root}",
            hint="pick another --name, or pass --replace",
        )
    find_links = options.find_links
    if find_links is not None:
        find_links = Path(find_links).expanduser().absolute()
        if not find_links.is_dir():
            raise UsageError(f"--find-links {find_links} is not a folder")
    use_index = options.use_index if options.use_index is not None else find_links is None
    months = options.era_months or settings.era_months
    clone_from = check_source(source)
    return _Checked(python, package, find_links, use_index, months, clone_from)


def _stage(
    workspace: Workspace,
    source: str,
    options: PackOptions,
    checked: _Checked,
    tmp: Path,
    say: Echo,
) -> _Staged:
    """Clone, read, pin and fetch under `tmp`; write and sign the staged manifest."""
    staged = RepoPackage(tmp / options.name)
    staged.root.mkdir()
    say(f"cloning {source}")
    head, branch = clone_ref(checked.clone_from, staged.repo_dir, options.ref)
    eras = split_eras(staged.repo_dir, head, months=checked.months, single=options.single_env)
    commits = sum(e.commits for e in eras)
    head_tree = GitTree(staged.repo_dir, head)
    harness_reqs = tuple(workspace.config.settings.repos.harness_requirements)
    head_reqs = _read(head_tree, options, harness_reqs, strict=True)
    _requires_python_ok(head_reqs, checked.python)
    layout = detect_layout(
        head_tree,
        head_reqs,
        mode=options.install_mode,
        version=_version_guess(staged.repo_dir, head),
    )
    test_cmd = options.test_cmd or layout.test_command
    if not test_cmd:
        raise UsageError(
            "found no test command: no pytest configuration and no test files",
            hint='give one with --test-cmd, e.g. --test-cmd "python -m pytest tests"',
        )
    tools = _Tools(
        workspace.harness_dir / "uv-cache", workspace.config.settings.validate, harness_reqs
    )
    resolver, fetcher = _tools(tools, options, checked, tmp, staged, say)
    packer = EraPacker(
        resolver, fetcher, eras, datetime.now(UTC), not options.single_env, checked.find_links, say
    )
    envs: list[Environment] = []
    for i, era in enumerate(eras):
        tree = head_tree if era.last_sha == head else GitTree(staged.repo_dir, era.last_sha)
        reqs = head_reqs if tree is head_tree else _read(tree, options, harness_reqs)
        _add_needs(reqs, era_config_trees(staged.repo_dir, era))
        if layout.mode == "editable":
            _add_editable_needs(reqs)
        envs.append(packer.environment(i, reqs))
    envs = merge_environments(envs)
    _check_usable(envs)
    warnings = _era_warnings(envs, len(eras))
    manifest = Manifest(
        name=options.name,
        source={
            "url": source if is_url(source) else checked.clone_from,
            "ref": options.ref or branch,
            "head": head,
            "branch": branch,
        },
        python=checked.python,
        platform=platform_tag(),
        importable={
            "mode": layout.mode,
            "pythonpath": list(layout.pythonpath),
            "env": dict(layout.env),
        },
        test={
            "command": test_cmd,
            "timeout_s": workspace.config.settings.repos.test_timeout_s,
            "per_test_timeout_s": workspace.config.settings.repos.per_test_timeout_s,
        },
        domain=options.domain,
        environments=tuple(envs),
        wheels=_keep_used_wheels(staged, envs),
        created_at=now_iso(),
        notes=(*layout.reasons, *warnings),
    )
    write_manifest(staged.manifest_path, manifest)
    sign_package(staged.root, workspace_key(workspace.root))
    return _Staged(manifest, head, commits, fetcher, warnings)


@dataclass(frozen=True)
class _Tools:
    """What the tools of a pack take from the workspace: uv's cache, the sandbox
    settings its sdist builds run under, and the harness's own requirements."""

    uv_cache: Path
    sandbox: ValidateSettings
    harness_reqs: tuple[str, ...]


def _tools(
    tools: _Tools,
    options: PackOptions,
    checked: _Checked,
    tmp: Path,
    staged: RepoPackage,
    say: Echo,
) -> tuple[Resolver, WheelFetcher]:
    """The sdist builder, wheel fetcher and resolver pack shares across eras."""
    uv_cache, harness_reqs = tools.uv_cache, tools.harness_reqs
    builder = SdistBuilder(
        tmp / "built",
        python=checked.python,
        find_links=checked.find_links,
        use_index=checked.use_index,
        uv_cache=uv_cache,
        sandbox=BuildSandbox.from_settings(tools.sandbox, allow_unsafe=options.unsafe_no_sandbox),
        say=say,
    )
    fetcher = WheelFetcher(
        staged.packages_dir,
        python=checked.python,
        find_links=checked.find_links,
        use_index=checked.use_index,
        uv_cache=uv_cache,
        builder=builder,
    )
    resolver = Resolver(
        python=checked.python,
        workdir=tmp / "resolve",
        find_links=checked.find_links,
        use_index=checked.use_index,
        uv_cache=uv_cache,
        own_tools=harness_reqs,
        builder=builder,
    )
    return resolver, fetcher


def _era_warnings(envs: list[Environment], era_count: int) -> list[str]:
    """The warnings about local-only date bounds and unusable eras."""
    warnings: list[str] = []
    if any(e.date_bound.startswith("not applied") for e in envs) and era_count > 1:
        warnings.append(
            "eras were resolved from --find-links only: uv cannot bound local files by "
            "upload date, so each era gets the newest local versions its requirements allow"
        )
    warnings += [f"era {e.id} is unusable: {e.unusable}" for e in envs if not e.usable]
    return warnings


def _keep_used_wheels(staged: RepoPackage, envs: list[Environment]) -> tuple[Wheel, ...]:
    """Delete fetched wheels no environment uses; the rest, sized and hashed."""
    used = sorted({f for e in envs for f in e.wheels})
    for stray in {p.name for p in staged.packages_dir.iterdir()} - set(used):
        (staged.packages_dir / stray).unlink()
    return tuple(
        Wheel(f, (staged.packages_dir / f).stat().st_size, sha256_file(staged.packages_dir / f))
        for f in used
    )


def _install(tmp: Path, staged: RepoPackage, package: RepoPackage) -> None:
    """Move the staged package into place, moving a replaced one aside into `tmp`."""
    shutil.rmtree(tmp / "resolve", ignore_errors=True)
    if package.root.exists():
        trash = tmp / "replaced"
        package.root.rename(trash)
    staged.root.rename(package.root)


def _read(
    tree: GitTree, options: PackOptions, tools: tuple[str, ...], *, strict: bool = False
) -> RequirementSet:
    """The commit's requirements, cra's tools, and what its test configuration needs."""
    reqs = read_requirements(
        tree,
        extras=options.extras,
        groups=options.groups,
        extra_requirements=options.requirements,
        tool_requirements=tools,
        strict=strict,
    )
    _add_needs(reqs, [tree])
    return reqs


def _add_needs(reqs: RequirementSet, trees: list[GitTree]) -> None:
    """Add what the test configuration of any of `trees` needs and `reqs` lacks."""
    for tree in trees:
        known = {canonicalize_name(n) for n in requirement_names(reqs)}
        for need in config_needs(tree, known):
            if need.optional:
                reqs.add(need.requirement, need.reason)
                reqs.optional.add(need.requirement)
            else:
                reqs.add(need.requirement, f"cra (the tests need it: {need.reason})")


EDITABLE_NEEDS = {"hatchling": ("editables",), "setuptools": ("wheel",)}
"""What a backend asks for at `get_requires_for_build_editable` (PEP 660): an editable
install without build isolation needs it in the environment beforehand."""


def _add_editable_needs(reqs: RequirementSet) -> None:
    backend = (reqs.build_backend or "setuptools").split(".")[0].split(":")[0]
    for line in EDITABLE_NEEDS.get(backend, ()):
        reqs.add(line, f"cra (an editable install with {backend} may need it)")
        reqs.optional.add(line)  # newer backends ask for nothing: dropped if not found


def _check_usable(envs: list[Environment]) -> None:
    """Raise when no era got an environment: there is nothing to pack."""
    if any(e.usable for e in envs):
        return
    reasons = "; ".join(f"era {e.id}: {e.unusable}" for e in envs)
    raise CraError(
        f"no era could be given an environment: {reasons}",
        hint="pin a working version of the package named above with --requirement, "
        "or give another --python",
    )


def _version_guess(repo_dir: Path, head: str) -> str:
    """A version for VCS-versioned builds: the newest tag reachable from head, else 0.0.0."""
    try:
        tag = git("describe", "--tags", "--abbrev=0", head, cwd=repo_dir).strip()
    except GitError:
        return "0.0.0"
    match = re.search(r"\d+(\.\d+)*", tag)
    return match.group(0) if match else "0.0.0"
