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

from cra.errors import CraError, UsageError
from cra.fsutil import now_iso, sha256_file
from cra.git import GitError, git
from cra.repos.eras import EraPacker, merge_environments, split_eras
from cra.repos.fetch import WheelFetcher
from cra.repos.layout import RepoPackage, check_name, package_path, register_repo
from cra.repos.manifest import Environment, Manifest, Wheel, write_manifest
from cra.repos.requirements import GitTree, RequirementSet, detect_layout, read_requirements
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


def _is_url(source: str) -> bool:
    return "://" in source or bool(re.match(r"^[\w.-]+@[\w.-]+:", source))


def check_source(source: str) -> str:
    """Return `source` as something git can clone; raise UsageError for a bad one."""
    if _is_url(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(
            f"source {source} does not exist", hint="give a local git repository or a URL"
        )
    try:
        top = git("rev-parse", "--absolute-git-dir", cwd=path if path.is_dir() else path.parent)
    except GitError:
        raise UsageError(
            f"{source} is not a git repository", hint="give the path of a git clone, or a URL"
        ) from None
    if not top.strip():
        raise UsageError(f"{source} is not a git repository")
    try:
        git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=path)
    except GitError:
        branches = git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=path).split()
        if not branches:
            raise UsageError(
                f"{source} is an empty repository (no commits)",
                hint="commit something first, or pack another repository",
            ) from None
    return str(path.absolute())


def clone_ref(source: str, dest: Path, ref: str | None) -> tuple[str, str]:
    """Write REF's history from `source` into a fresh repository at `dest` that cra
    creates itself (no checkout); return (head sha, branch name).

    Only objects and refs travel: nothing of the source's `.git` (config, hooks,
    attributes, info, worktrees) is copied, and no remote, tag or hook is left pointing
    outside."""
    dest.mkdir()
    git("init", "-q", "--template=", str(dest), cwd=dest.parent)
    try:
        advertised = git("ls-remote", "--symref", source, "HEAD", cwd=dest)
        refspecs = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        git("fetch", "-q", "--no-tags", "--no-write-fetch-head", source, *refspecs, cwd=dest)
    except GitError as exc:
        raise UsageError(f"cannot clone {source}: {exc}", hint="check the path or URL") from None
    default = _advertised_head(advertised) or "main"
    want = ref or default
    sha = None
    is_branch = False
    for candidate in (f"refs/remotes/origin/{want}", f"refs/tags/{want}", want):
        try:
            sha = git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=dest)
            sha = sha.strip()
            is_branch = candidate.startswith("refs/remotes/")
            break
        except GitError:
            continue
    if not sha:
        if ref is None:
            raise UsageError(f"{source} is an empty repository (no commits)")
        refs = git(
            "for-each-ref", "--format=%(refname:short)", "refs/remotes", "refs/tags", cwd=dest
        ).split()
        shown = ", ".join(
            r.removeprefix("origin/") for r in refs if r not in ("origin", "origin/HEAD")
        )[:200]
        raise UsageError(f"unknown ref {ref!r} in {source}", hint=f"known refs: {shown}")
    # Keep a branch's name; a tag or a commit gets a branch called main.
    branch = want if is_branch and _valid_branch(want, dest) else "main"
    git("update-ref", f"refs/heads/{branch}", sha, cwd=dest)
    git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=dest)
    listed = git("for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes", cwd=dest)
    for other in listed.split():
        if other != f"refs/heads/{branch}":
            git("update-ref", "--no-deref", "-d", other, cwd=dest)
    for tag in git("tag", "--no-merged", sha, cwd=dest).split():
        git("tag", "-d", tag, cwd=dest)
    git("reflog", "expire", "--expire=now", "--all", cwd=dest)
    git("gc", "-q", "--prune=now", cwd=dest)
    return sha, branch


def _advertised_head(ls_remote: str) -> str | None:
    """The branch a `git ls-remote --symref SOURCE HEAD` listing says HEAD points at."""
    for line in ls_remote.splitlines():
        target, _, name = line.partition("\t")
        if name == "HEAD" and target.startswith("ref: refs/heads/"):
            return target.removeprefix("ref: refs/heads/")
    return None


def _valid_branch(name: str, cwd: Path) -> bool:
    try:
        git("check-ref-format", "--branch", name, cwd=cwd)
    except GitError:
        return False
    return True


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


def pack(
    workspace: Workspace, source: str, options: PackOptions, *, echo: Echo | None = None
) -> PackResult:
    """Pack `source` as `repos/NAME/` of `workspace`; nothing is left behind on failure."""
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    check_name(options.name)
    python = check_python(options.python)
    package = package_path(workspace, options.name)
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
    months = options.era_months or workspace.config.settings.repos.era_months
    clone_from = check_source(source)
    workspace.repos_dir.mkdir(parents=True, exist_ok=True)
    uv_cache = workspace.harness_dir / "uv-cache"
    tmp = Path(tempfile.mkdtemp(prefix=f".pack-{options.name}-", dir=workspace.repos_dir))
    try:
        staged = RepoPackage(tmp / options.name)
        staged.root.mkdir()
        say(f"cloning {source}")
        head, branch = clone_ref(clone_from, staged.repo_dir, options.ref)
        eras = split_eras(staged.repo_dir, head, months=months, single=options.single_env)
        commits = sum(e.commits for e in eras)
        head_tree = GitTree(staged.repo_dir, head)
        harness_reqs = tuple(workspace.config.settings.repos.harness_requirements)
        head_reqs = _read(head_tree, options, harness_reqs, strict=True)
        _requires_python_ok(head_reqs, python)
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
        builder = SdistBuilder(
            tmp / "built",
            python=python,
            find_links=find_links,
            use_index=use_index,
            uv_cache=uv_cache,
            sandbox=BuildSandbox.from_settings(
                workspace.config.settings.validate, allow_unsafe=options.unsafe_no_sandbox
            ),
            say=say,
        )
        fetcher = WheelFetcher(
            staged.packages_dir,
            python=python,
            find_links=find_links,
            use_index=use_index,
            uv_cache=uv_cache,
            builder=builder,
        )
        resolver = Resolver(
            python=python,
            workdir=tmp / "resolve",
            find_links=find_links,
            use_index=use_index,
            uv_cache=uv_cache,
            own_tools=harness_reqs,
            builder=builder,
        )
        packer = EraPacker(
            resolver, fetcher, eras, datetime.now(UTC), not options.single_env, find_links, say
        )
        warnings: list[str] = []
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
        if any(e.date_bound.startswith("not applied") for e in envs) and len(eras) > 1:
            warnings.append(
                "eras were resolved from --find-links only: uv cannot bound local files by "
                "upload date, so each era gets the newest local versions its requirements allow"
            )
        warnings += [f"era {e.id} is unusable: {e.unusable}" for e in envs if not e.usable]
        used = sorted({f for e in envs for f in e.wheels})
        for stray in {p.name for p in staged.packages_dir.iterdir()} - set(used):
            (staged.packages_dir / stray).unlink()
        wheels = tuple(
            Wheel(f, (staged.packages_dir / f).stat().st_size, sha256_file(staged.packages_dir / f))
            for f in used
        )
        manifest = Manifest(
            name=options.name,
            source={
                "url": source if _is_url(source) else clone_from,
                "ref": options.ref or branch,
                "head": head,
                "branch": branch,
            },
            python=python,
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
            wheels=wheels,
            created_at=now_iso(),
            notes=(*layout.reasons, *warnings),
        )
        write_manifest(staged.manifest_path, manifest)
        sign_package(staged.root, workspace_key(workspace.root))
        shutil.rmtree(tmp / "resolve", ignore_errors=True)
        if package.root.exists():
            trash = tmp / "replaced"
            package.root.rename(trash)
        staged.root.rename(package.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with closing(workspace.raw_db()) as conn:
        register_repo(
            conn,
            options.name,
            source_url=manifest.source["url"],
            head_sha=head,
            domain=options.domain,
            manifest_sha256=sha256_file(package.manifest_path),
        )
    stamp_verified(workspace, package)
    return PackResult(
        package=package,
        manifest=manifest,
        commits=commits,
        wheels_copied=fetcher.copied,
        wheels_downloaded=fetcher.downloaded,
        wheels_built=fetcher.built,
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


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
