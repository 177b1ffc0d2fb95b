"""`cra repo pack`: a git repository and every wheel it needs, as `repos/NAME/`.

Runs on a connected machine (or offline, from a local wheelhouse given with
`--find-links`). Steps: clone REF's whole history with no remote left; split the
history into eras; per era, read the requirements at the era's last commit and resolve
them with `uv pip compile` bounded by the era's end (`--exclude-newer`); fetch one
wheel per pin (building a wheel at pack time for an sdist-only dependency, so the
air-gapped side never builds dependencies); write `manifest.json`. Everything is
written under a temporary directory in `repos/` and renamed at the end.
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

from cra.env.tools import ToolError, pip_argv, run_tool, tool_env, uv_binary
from cra.errors import CraError, UsageError
from cra.fsutil import now_iso, sha256_file
from cra.git import GitError, git
from cra.repos.layout import RepoPackage, check_name, package_path, register_repo
from cra.repos.manifest import Environment, Manifest, Wheel, write_manifest
from cra.repos.requirements import GitTree, RequirementSet, detect_layout, read_requirements
from cra.repos.wheels import best_wheel, parse_pin, platform_tag
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


@dataclass(frozen=True)
class Era:
    """A bucket of history: commits authored in [start, until), and its last commit."""

    id: str
    start: datetime
    until: datetime
    last_sha: str
    commits: int


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
    """Clone `source` into `dest` without a checkout, keep only REF's history; return
    (head sha, branch name). No remote, tag or hook is left pointing outside."""
    try:
        git("clone", "-q", "--no-checkout", "--no-hardlinks", source, str(dest), cwd=dest.parent)
    except GitError as exc:
        raise UsageError(f"cannot clone {source}: {exc}", hint="check the path or URL") from None
    if not (dest / ".git").is_dir():
        raise UsageError(f"cloning {source} made no repository")
    try:
        default = git("symbolic-ref", "--short", "HEAD", cwd=dest).strip()
    except GitError:
        default = "main"
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
    for other in git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=dest).split():
        if other != f"refs/heads/{branch}":
            git("update-ref", "-d", other, cwd=dest)
    git("remote", "remove", "origin", cwd=dest)
    for tag in git("tag", "--no-merged", sha, cwd=dest).split():
        git("tag", "-d", tag, cwd=dest)
    git("reflog", "expire", "--expire=now", "--all", cwd=dest)
    git("gc", "-q", "--prune=now", cwd=dest)
    hooks = dest / ".git" / "hooks"
    if hooks.is_dir():
        shutil.rmtree(hooks)
    hooks.mkdir()
    for path in (dest / ".git" / "description", dest / ".git" / "FETCH_HEAD"):
        path.unlink(missing_ok=True)
    return sha, branch


def _valid_branch(name: str, cwd: Path) -> bool:
    try:
        git("check-ref-format", "--branch", name, cwd=cwd)
    except GitError:
        return False
    return True


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _from_index(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def split_eras(repo_dir: Path, head: str, *, months: int, single: bool = False) -> list[Era]:
    """Bucket REF's history by author date into eras of `months` calendar months."""
    if months <= 0:
        raise UsageError(f"--era-months must be greater than 0, got {months}")
    lines = git("log", "--topo-order", "--format=%H %at", head, cwd=repo_dir).split("\n")
    commits = [
        (sha, datetime.fromtimestamp(int(ts), UTC))
        for sha, ts in (line.split() for line in lines if line.strip())
    ]
    if single:
        newest = max(commits, key=lambda c: c[1])
        start = min(c[1] for c in commits)
        return [Era("all", start, newest[1], head, len(commits))]
    buckets: dict[int, list[tuple[str, datetime]]] = {}
    for sha, when in commits:
        buckets.setdefault(_month_index(when) // months, []).append((sha, when))
    eras = []
    for key in sorted(buckets):
        members = buckets[key]
        start = _from_index(key * months)
        until = _from_index((key + 1) * months)
        last = max(members, key=lambda c: c[1])[0]  # ties: log order puts the newest first
        era_id = str(start.year) if months == 12 else start.strftime("%Y-%m")
        eras.append(Era(era_id, start, until, last, len(members)))
    return eras


def resolve(
    reqs: RequirementSet,
    *,
    python: str,
    workdir: Path,
    find_links: Path | None,
    use_index: bool,
    exclude_newer: datetime | None,
    uv_cache: Path,
) -> list[str]:
    """Pin `reqs` for Python `python` with `uv pip compile`; return `name==version` lines."""
    uv = uv_binary()
    if uv is None:
        raise CraError("uv is not installed", hint="install cra's dependencies (uv is one)")
    workdir.mkdir(parents=True, exist_ok=True)
    infile = workdir / "requirements.in"
    infile.write_text("\n".join(reqs.requirements) + "\n", encoding="utf-8")
    argv = [
        str(uv),
        "pip",
        "compile",
        str(infile),
        "--python-version",
        python,
        "--no-header",
        "--no-annotate",
        "--quiet",
    ]
    if reqs.constraints:
        cfile = workdir / "constraints.txt"
        cfile.write_text("\n".join(reqs.constraints) + "\n", encoding="utf-8")
        argv += ["--constraint", str(cfile)]
    if find_links is not None:
        argv += ["--find-links", str(find_links)]
    if not use_index:
        argv.append("--no-index")
    if exclude_newer is not None:
        argv += ["--exclude-newer", exclude_newer.strftime("%Y-%m-%dT%H:%M:%SZ")]
    hint = "add a wheel of it to --find-links, or pin another version with --requirement"
    try:
        out = run_tool(
            argv, what="resolving requirements", env=tool_env(uv_cache), cwd=workdir, hint=hint
        )
    except ToolError as exc:
        raise CraError(f"cannot resolve the requirements: {_why(exc.output)}", hint=hint) from None
    pins = [line.strip() for line in out.splitlines() if line.strip() and not line.startswith("#")]
    for pin in pins:
        if parse_pin(pin) is None:
            raise CraError(
                f"resolution gave {pin!r}, which is not a name==version pin",
                hint="a direct URL or path requirement cannot be packed; drop it or pass a wheel",
            )
    return pins


def _why(output: str) -> str:
    lines = [line.strip(" ×╰─▶") for line in output.splitlines() if line.strip()]
    return " ".join(lines[-3:]) if lines else "no output"


class WheelFetcher:
    """Puts one wheel per pin into `packages/`: from --find-links, the index, or a build."""

    def __init__(
        self, dest: Path, *, python: str, find_links: Path | None, use_index: bool, uv_cache: Path
    ) -> None:
        self.dest = dest
        self.python = python
        self.find_links = find_links
        self.use_index = use_index
        self.uv_cache = uv_cache
        self.copied = self.downloaded = self.built = 0
        dest.mkdir(parents=True, exist_ok=True)
        self._local = sorted(p.name for p in find_links.iterdir()) if find_links else []

    def fetch(self, pin: str) -> str:
        """The file name in `packages/` of a wheel that satisfies `pin`."""
        have = best_wheel(pin, (p.name for p in self.dest.iterdir()), self.python)
        if have:
            return have
        local = best_wheel(pin, self._local, self.python)
        if local and self.find_links is not None:
            tmp = self.dest / f".{local}.tmp"
            shutil.copyfile(self.find_links / local, tmp)
            tmp.replace(self.dest / local)
            self.copied += 1
            return local
        sdist = self._local_sdist(pin)
        if sdist is not None:
            return self._build(pin, sdist)
        if self.use_index:
            return self._download(pin)
        raise CraError(
            f"no wheel or sdist of {pin} for Python {self.python} in {self.find_links}",
            hint="add it to the --find-links folder, or allow the index with --index",
        )

    def _local_sdist(self, pin: str) -> Path | None:
        parsed = parse_pin(pin)
        if parsed is None or self.find_links is None:
            return None
        name, version = parsed
        for file in self._local:
            match = re.match(r"^(.+)-([^-]+)\.(tar\.gz|zip)$", file)
            if (
                match
                and re.sub(r"[-_.]+", "-", match.group(1)).lower() == name
                and match.group(2) == str(version)
            ):
                return self.find_links / file
        return None

    def _new_wheel(self, before: set[str], pin: str) -> str:
        after = {p.name for p in self.dest.iterdir()} - before
        found = best_wheel(pin, after, self.python)
        if not found:
            raise CraError(f"fetching {pin} gave no usable wheel for Python {self.python}")
        return found

    def _build(self, pin: str, sdist: Path | None) -> str:
        uv = uv_binary()
        before = {p.name for p in self.dest.iterdir()}
        with tempfile.TemporaryDirectory(prefix="cra-build-") as tmp:
            if sdist is None:
                run_tool(
                    [*pip_argv(), "download", "--no-deps", "--no-binary=:all:", "--dest", tmp, pin],
                    what=f"downloading the sdist of {pin}",
                    env=tool_env(self.uv_cache),
                )
                sdists = list(Path(tmp).iterdir())
                if not sdists:
                    raise CraError(f"the index has no sdist of {pin}")
                sdist = sdists[0]
            argv = [str(uv), "build", "--wheel", "--out-dir", str(self.dest), str(sdist)]
            if self.find_links is not None:
                argv += ["--find-links", str(self.find_links)]
            if not self.use_index:
                argv.append("--no-index")
            run_tool(
                argv,
                what=f"building a wheel of {pin}",
                env=tool_env(self.uv_cache),
                hint="the build needs its backend: add it to --find-links or allow the index",
            )
        self.built += 1
        return self._new_wheel(before, pin)

    def _download(self, pin: str) -> str:
        before = {p.name for p in self.dest.iterdir()}
        argv = [
            *pip_argv(),
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            self.python,
            "--dest",
            str(self.dest),
            pin,
        ]
        try:
            run_tool(argv, what=f"downloading {pin}", env=tool_env(self.uv_cache))
        except ToolError as exc:
            if "No matching distribution" not in exc.output and "none" not in exc.output:
                raise
            return self._build(pin, None)
        self.downloaded += 1
        return self._new_wheel(before, pin)


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


def _merge(envs: list[Environment]) -> list[Environment]:
    """Merge neighbouring environments whose pins are identical."""
    merged: list[Environment] = []
    for env in envs:
        prev = merged[-1] if merged else None
        if prev is not None and prev.requirements == env.requirements:
            merged[-1] = Environment(
                id=f"{prev.id.split('..')[0]}..{env.id}",
                start=prev.start,
                until=env.until,
                resolved_at=env.resolved_at,
                exclude_newer=env.exclude_newer,
                date_bound=env.date_bound,
                requirements=env.requirements,
                wheels=env.wheels,
                sources=tuple(dict.fromkeys([*prev.sources, *env.sources])),
            )
        else:
            merged.append(env)
    return merged


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
    months = options.era_months or workspace.config["repos.era_months"]
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
        harness_reqs = tuple(workspace.config["repos.harness_requirements"])
        head_reqs = read_requirements(
            head_tree,
            extras=options.extras,
            groups=options.groups,
            extra_requirements=(*harness_reqs, *options.requirements),
            strict=True,
        )
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
        fetcher = WheelFetcher(
            staged.packages_dir,
            python=python,
            find_links=find_links,
            use_index=use_index,
            uv_cache=uv_cache,
        )
        now = datetime.now(UTC)
        warnings: list[str] = []
        envs: list[Environment] = []
        for i, era in enumerate(eras):
            tree = head_tree if era.last_sha == head else GitTree(staged.repo_dir, era.last_sha)
            reqs = (
                head_reqs
                if tree is head_tree
                else read_requirements(
                    tree,
                    extras=options.extras,
                    groups=options.groups,
                    extra_requirements=(*harness_reqs, *options.requirements),
                )
            )
            bound = era.until if era.until < now and not options.single_env else None
            if bound is None:
                date_bound = "none: the era reaches the present"
            elif not use_index:
                date_bound = "not applied: --find-links files carry no upload date"
            elif find_links is not None:
                date_bound = "applied to the index; --find-links files carry no upload date"
            else:
                date_bound = "applied"
            say(f"resolving era {era.id} ({era.commits} commits) at {era.last_sha[:12]}")
            pins = resolve(
                reqs,
                python=python,
                workdir=tmp / "resolve" / era.id,
                find_links=find_links,
                use_index=use_index,
                exclude_newer=bound if use_index else None,
                uv_cache=uv_cache,
            )
            files = tuple(fetcher.fetch(pin) for pin in pins)
            envs.append(
                Environment(
                    id=era.id,
                    start=None if i == 0 else era.start.date().isoformat(),
                    until=None if i == len(eras) - 1 else era.until.date().isoformat(),
                    resolved_at=era.last_sha,
                    exclude_newer=bound.isoformat() if bound is not None and use_index else None,
                    date_bound=date_bound,
                    requirements=tuple(pins),
                    wheels=tuple(sorted(set(files))),
                    sources=tuple(reqs.sources),
                )
            )
        envs = _merge(envs)
        if any(e.date_bound.startswith("not applied") for e in envs) and len(eras) > 1:
            warnings.append(
                "eras were resolved from --find-links only: uv cannot bound local files by "
                "upload date, so each era gets the newest local versions its requirements allow"
            )
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
                "timeout_s": workspace.config["repos.test_timeout_s"],
                "per_test_timeout_s": workspace.config["repos.per_test_timeout_s"],
            },
            domain=options.domain,
            environments=tuple(envs),
            wheels=wheels,
            created_at=now_iso(),
            notes=(*layout.reasons, *warnings),
        )
        write_manifest(staged.manifest_path, manifest)
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
    from cra.repos.verify import stamp_verified

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


def _version_guess(repo_dir: Path, head: str) -> str:
    """A version for VCS-versioned builds: the newest tag reachable from head, else 0.0.0."""
    try:
        tag = git("describe", "--tags", "--abbrev=0", head, cwd=repo_dir).strip()
    except GitError:
        return "0.0.0"
    match = re.search(r"\d+(\.\d+)*", tag)
    return match.group(0) if match else "0.0.0"
