"""Re-pin one era of an existing package, after its environment failed to collect.

The collection proof (`cra env prove`) can find that an era's environment holds a
dependency too old for the interpreter (it fails inside that dependency's own code, e.g.
`from collections import Sequence` on Python 3.10+). On a connected machine the era is
then re-pinned with that dependency moved to the interpreter's tools date (the rest of the
era stays bounded by its date), its new wheels fetched into `packages/`, and the manifest
rewritten with the choice recorded in the environment's `attempts`. Wheels no environment
uses any more are removed. Nothing changes when the new pins cannot be had.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from packaging.utils import canonicalize_name

from cra.errors import CraError
from cra.fsutil import sha256_file
from cra.repos.fetch import WheelFetcher
from cra.repos.layout import RepoPackage, require_package
from cra.repos.manifest import Environment, Manifest, Wheel, load_manifest, write_manifest
from cra.repos.resolve import Resolver, stamp, tools_date
from cra.repos.sdist import BuildSandbox, SdistBuilder
from cra.repos.signing import sign_package, workspace_key
from cra.repos.verify import stamp_verified
from cra.workspace import Workspace


def _bound(env: Environment) -> datetime | None:
    return datetime.fromisoformat(env.exclude_newer) if env.exclude_newer else None


def candidate_bounds(manifest: Manifest, env_id: str) -> list[datetime]:
    """The bounds to try for a culprit of `env_id`, smallest move first: each later era's
    start up to the interpreter's tools date, then the tools date."""
    env = manifest.environment(env_id)
    bound, floor = _bound(env), tools_date(manifest.python)
    if bound is None or floor is None or floor <= bound:
        return []
    starts = {e.start for e in manifest.environments if e.start}
    later = sorted(datetime.fromisoformat(d).replace(tzinfo=floor.tzinfo) for d in starts)
    return [m for m in later if bound < m < floor] + [floor]


def adjust_era(
    workspace: Workspace, name: str, env_id: str, culprits: dict[str, str], at: datetime
) -> Environment | None:
    """Re-pin environment `env_id` of package `name` with each of `culprits` (dist name
    -> why) bounded at `at`, every other pin kept; the new environment, or None when
    nothing changed (the new pins do not resolve, or are the same). Wheels it no longer
    uses stay until :func:`settle`."""
    package = require_package(workspace.repos_dir, name)
    manifest = load_manifest(package.manifest_path)
    env = manifest.environment(env_id)
    wanted = {canonicalize_name(d) for d in culprits}
    requirements = [
        pin.split("==")[0] if canonicalize_name(pin.split("==")[0]) in wanted else pin
        for pin in env.requirements
    ]
    uv_cache = workspace.harness_dir / "uv-cache"
    builder = SdistBuilder(
        workspace.harness_dir / "adjust" / name / "built",
        python=manifest.python,
        find_links=None,
        use_index=True,
        uv_cache=uv_cache,
        sandbox=BuildSandbox.from_settings(workspace.config.settings.validate, allow_unsafe=False),
    )
    resolver = Resolver(
        python=manifest.python,
        workdir=workspace.harness_dir / "adjust" / name,
        find_links=None,
        use_index=True,
        uv_cache=uv_cache,
        own_tools=(),
        builder=builder,
    )
    fetcher = WheelFetcher(
        package.packages_dir,
        python=manifest.python,
        find_links=None,
        use_index=True,
        uv_cache=uv_cache,
        builder=builder,
    )
    later: dict[str, str] = {dist: stamp(at) for dist in sorted(wanted)}
    before = {p.name for p in package.packages_dir.iterdir()}
    try:
        pins = resolver.compile(requirements, [], resolver.workdir / env.id, None, later)
        files = tuple(fetcher.fetch(pin) for pin in pins)
    except CraError:
        pins = list(env.requirements)
    if sorted(pins) == sorted(env.requirements):
        for stray in {p.name for p in package.packages_dir.iterdir()} - before:
            (package.packages_dir / stray).unlink()
        return None
    moved = ", ".join(f"{dist} {stamp(at)}" for dist in sorted(wanted))
    why = "; ".join(f"{d}: {r}" for d, r in culprits.items())
    note = f"adjusted after the collection proof: every other pin kept, {moved} ({why})"
    new = replace(
        env,
        requirements=tuple(pins),
        wheels=tuple(sorted(set(files))),
        attempts=(*env.attempts, note),
        collect=None,
    )
    _rewrite(workspace, package, manifest, new)
    return new


def settle(workspace: Workspace, name: str, env: Environment) -> None:
    """Make `env` the package's environment of its id for good: drop the wheels no
    environment uses and record the package as verified again."""
    package = require_package(workspace.repos_dir, name)
    manifest = load_manifest(package.manifest_path)
    _rewrite(workspace, package, manifest, env)
    used = {f for e in load_manifest(package.manifest_path).environments for f in e.wheels}
    for stray in {p.name for p in package.packages_dir.iterdir()} - used:
        (package.packages_dir / stray).unlink()
    stamp_verified(workspace.verified_dir, package)


def _rewrite(
    workspace: Workspace, package: RepoPackage, manifest: Manifest, new: Environment
) -> None:
    """The manifest with `new` in place of its namesake, signed again with the
    workspace's key; every wheel on disk that an environment uses is listed."""
    packages = package.packages_dir
    envs = tuple(new if e.id == new.id else e for e in manifest.environments)
    used = sorted({f for e in envs for f in e.wheels})
    known = {w.file: w for w in manifest.wheels}
    wheels = tuple(
        known.get(f) or Wheel(f, (packages / f).stat().st_size, sha256_file(packages / f))
        for f in used
    )
    write_manifest(package.manifest_path, replace(manifest, environments=envs, wheels=wheels))
    sign_package(package.root, workspace_key(workspace.root))
