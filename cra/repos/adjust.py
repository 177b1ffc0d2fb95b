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
from pathlib import Path

from packaging.utils import canonicalize_name

from cra.errors import CraError
from cra.fsutil import sha256_file
from cra.repos.eras import Bounds
from cra.repos.fetch import WheelFetcher
from cra.repos.layout import require_package
from cra.repos.manifest import Environment, Manifest, Wheel, load_manifest, write_manifest
from cra.repos.requirements import GitTree, RequirementSet, read_requirements
from cra.repos.resolve import Resolver, stamp, tools_date
from cra.repos.verify import stamp_verified
from cra.workspace import Workspace


def _bound(env: Environment) -> datetime | None:
    return datetime.fromisoformat(env.exclude_newer) if env.exclude_newer else None


def adjust_era(
    workspace: Workspace, name: str, env_id: str, culprits: dict[str, str]
) -> Environment | None:
    """Re-pin environment `env_id` of package `name` with each of `culprits` (dist name
    -> why) bounded by the interpreter's tools date; the new environment, or None when
    nothing could be changed (no bound to lift, or the new pins do not resolve)."""
    package = require_package(workspace, name)
    manifest = load_manifest(package.manifest_path)
    env = manifest.environment(env_id)
    bound, floor = _bound(env), tools_date(manifest.python)
    if bound is None or floor is None or floor <= bound:
        return None
    tools = tuple(workspace.config["repos.harness_requirements"])
    reqs = RequirementSet()
    reqs.provides = read_requirements(GitTree(package.repo_dir, env.resolved_at)).provides
    wanted = {canonicalize_name(d) for d in culprits}
    for pin in env.requirements:
        dist = pin.split("==")[0]
        if canonicalize_name(dist) in wanted:
            reqs.add(dist, "the collection proof")
        else:
            reqs.add(pin, "the era's environment")
    uv_cache = workspace.harness_dir / "uv-cache"
    resolver = Resolver(
        python=manifest.python,
        workdir=workspace.harness_dir / "adjust" / name,
        find_links=None,
        use_index=True,
        uv_cache=uv_cache,
        own_tools=tools,
    )
    fetcher = WheelFetcher(
        package.packages_dir,
        python=manifest.python,
        find_links=None,
        use_index=True,
        uv_cache=uv_cache,
    )
    bounds = Bounds([(None, "every other pin kept as it was")], floor)
    bounds.packages = {canonicalize_name(d): floor for d in culprits}
    later = {name: stamp(floor) for name in bounds.packages}
    before = {p.name for p in package.packages_dir.iterdir()}
    try:
        pins = resolver.compile(reqs.requirements, [], resolver.workdir / env.id, None, later)
        files = tuple(fetcher.fetch(pin) for pin in pins)
    except CraError:
        pins = list(env.requirements)
    if sorted(pins) == sorted(env.requirements):
        for stray in {p.name for p in package.packages_dir.iterdir()} - before:
            (package.packages_dir / stray).unlink()
        return None
    why = "; ".join(f"{d}: {r}" for d, r in culprits.items())
    note = f"adjusted after the collection proof: {bounds.describe()} ({why})"
    new = replace(
        env,
        requirements=tuple(pins),
        wheels=tuple(sorted(set(files))),
        attempts=(*env.attempts, note),
        collect=None,
    )
    _rewrite(package.packages_dir, package.manifest_path, manifest, new)
    stamp_verified(workspace, package)
    return new


def _rewrite(packages: Path, path: Path, manifest: Manifest, new: Environment) -> None:
    """The manifest with `new` in place of its namesake, wheels listed and pruned."""
    envs = tuple(new if e.id == new.id else e for e in manifest.environments)
    used = sorted({f for e in envs for f in e.wheels})
    known = {w.file: w for w in manifest.wheels}
    wheels = tuple(
        known.get(f) or Wheel(f, (packages / f).stat().st_size, sha256_file(packages / f))
        for f in used
    )
    write_manifest(path, replace(manifest, environments=envs, wheels=wheels))
    for stray in {p.name for p in packages.iterdir()} - set(used):
        (packages / stray).unlink()
