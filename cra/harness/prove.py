"""Proof that an era's environment runs that era's tests, made once per environment.

For each usable environment of a package: build it (offline), export the tree of the
era's last commit, and run `pytest --collect-only` there in the sandbox, exactly as
validation runs pytest (same plugin, options and limits). The environment *collects* when
pytest finishes, collects at least one test, and no module fails to import. The result is
kept beside the built environment (`harness/envs/KEY/collect.json`), so the proof is made
once per environment and redone only when the environment changes.

`collecting_share` then says which share of a repository's qualifying commits falls in an
environment that collects: the figure to look at before validating a repository.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from cra.db.commits import qualified_commits
from cra.db.repos import repo_id
from cra.errors import CraError
from cra.harness.runner import Runner, make_runner
from cra.harness.trees import export_tree
from cra.repos.adjust import adjust_era, candidate_bounds, settle
from cra.repos.layout import require_package
from cra.repos.manifest import Environment, load_manifest
from cra.workspace import Workspace

Echo = Callable[[str], None]
PROOF_FILE = "collect.json"


@dataclass(frozen=True)
class Proof:
    """Whether one environment collects its era's tests at the era's last commit."""

    env_id: str
    commit: str
    collects: bool
    collected: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    isolation: str = ""
    seconds: float = 0.0
    cached: bool = False
    culprits: dict[str, str] = field(default_factory=dict)
    """Installed distributions whose own code failed during collection, with the line
    that says how: candidates for a newer version (`cra env prove --adjust`)."""

    def line(self) -> str:
        """One line for a person."""
        if self.collects:
            return f"environment {self.env_id}: collects {self.collected} tests"
        why = "; ".join(f"{k}: {v}" for k, v in list(self.errors.items())[:3]) or self.detail
        first = why.strip().splitlines()[-1] if why.strip() else "no output"
        return f"environment {self.env_id}: does not collect ({first[:200]})"


def _collect(runner: Runner, env: Environment, scratch: Path) -> Proof:
    built = runner.built(env.id)
    if isinstance(built, CraError):
        return Proof(env.id, env.resolved_at, False, detail=f"build failed: {built}")
    repo_dir = runner.package.repo_dir
    tree = scratch / "tree"
    export_tree(repo_dir, env.resolved_at, tree)
    manifest = runner.manifest
    timeout = float(manifest.test["timeout_s"])
    run = runner.run_tests(
        built, tree, [], "collect", 1, scratch / "run", timeout, extra=("--collect-only",)
    )
    collects = (
        run.collected is not None
        and run.collected > 0
        and not run.collect_errors
        and run.problem in (None, "tests_error")
        and run.exitstatus == 0
    )
    text = "\n".join([*run.collect_errors.values(), run.detail or ""])
    return Proof(
        env.id,
        env.resolved_at,
        collects,
        culprits={} if collects else culprits(built.path, text),
        collected=run.collected or 0,
        errors={k: v[-300:] for k, v in list(run.collect_errors.items())[:10]},
        detail="" if collects else (run.detail or "")[-600:],
        isolation=runner.isolation,
        seconds=run.seconds,
    )


TOOLS = frozenset({"pytest", "pluggy", "iniconfig", "pytest-timeout", "py", "packaging"})


def _top_levels(env_path: Path) -> dict[str, str]:
    """Top-level module -> distribution, from the environment's dist-info records."""
    found: dict[str, str] = {}
    for record in env_path.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        dist = record.parent.name.split("-")[0].replace("_", "-").lower()
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and not top.endswith((".dist-info", ".data")) and top != "..":
                found.setdefault(top.removesuffix(".py"), dist)
    return found


def culprits(env_path: Path, text: str) -> dict[str, str]:
    """Distributions (cra's own tools aside) whose files appear in a traceback, each
    with the error line that ends it."""
    tops = set(re.findall(r"/site-packages/([A-Za-z0-9_]+)", text))
    if not tops:
        return {}
    owners = _top_levels(env_path)
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    out = {}
    for top in sorted(tops):
        dist = owners.get(top)
        if dist and dist not in TOOLS and not top.startswith("_pytest"):
            out[dist] = last[:200]
    return out


def prove_environment(runner: Runner, env: Environment) -> Proof:
    """The proof for `env`, made once per built environment and kept beside it."""
    built = runner.built(env.id)
    if not isinstance(built, CraError):
        kept = built.path / PROOF_FILE
        if kept.is_file():
            data = json.loads(kept.read_text(encoding="utf-8"))
            return Proof(**{**data, "cached": True})
    scratch_root = runner.scratch_root
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"collect-{env.id}-", dir=scratch_root))
    started = time.perf_counter()
    try:
        proof = _collect(runner, env, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    proof = Proof(**{**asdict(proof), "seconds": round(time.perf_counter() - started, 3)})
    if not isinstance(built, CraError) and proof.isolation:
        (built.path / PROOF_FILE).write_text(json.dumps(asdict(proof)), encoding="utf-8")
    return proof


def prove_package(
    workspace: Workspace, name: str, *, allow_unsafe: bool = False, echo: Echo | None = None
) -> list[Proof]:
    """A proof per usable environment of package `name`."""
    say = echo or (lambda _msg: None)
    runner = make_runner(workspace, name, runs=1, allow_unsafe=allow_unsafe)
    manifest = load_manifest(require_package(workspace.repos_dir, name).manifest_path)
    proofs = []
    for env in manifest.environments:
        if not env.usable:
            say(f"environment {env.id}: unusable ({env.unusable})")
            continue
        proofs.append(prove_environment(runner, env))
        say(proofs[-1].line())
    return proofs


@dataclass(frozen=True)
class Share:
    """How many of a repository's qualifying commits fall in each kind of environment."""

    qualifying: int
    collecting: int
    unusable: int
    unproven: int

    def percent(self) -> float | None:
        """The share of qualifying commits in an environment that collects."""
        return round(100 * self.collecting / self.qualifying, 1) if self.qualifying else None


def collecting_share(workspace: Workspace, name: str, proofs: list[Proof]) -> Share:
    """Where the repository's qualifying commits land: collecting, unusable or failing."""
    manifest = load_manifest(require_package(workspace.repos_dir, name).manifest_path)
    ok = {p.env_id for p in proofs if p.collects}
    with closing(workspace.raw_db()) as conn:
        found = repo_id(conn, name)
        commits = qualified_commits(conn, found, None) if found is not None else []
    counts = {"collecting": 0, "unusable": 0, "unproven": 0}
    for commit in commits:
        env = manifest.environment_for(datetime.fromisoformat(commit.authored_at))
        kind = "unusable" if not env.usable else "collecting" if env.id in ok else "unproven"
        counts[kind] += 1
    return Share(len(commits), **counts)


def adjust_failing(
    workspace: Workspace,
    name: str,
    proofs: list[Proof],
    *,
    allow_unsafe: bool = False,
    echo: Echo | None = None,
) -> list[Proof]:
    """Re-pin each era whose proof names culprits (`cra.repos.adjust`), trying the
    smallest move first, until it collects; an era that collects with none keeps its
    pins. The proofs, updated where an era changed."""
    say = echo or (lambda _msg: None)
    out = []
    for proof in proofs:
        if not proof.collects and proof.culprits:
            proof = _adjust_one(workspace, name, proof, allow_unsafe, say)
        out.append(proof)
    return out


def _adjust_one(
    workspace: Workspace, name: str, proof: Proof, allow_unsafe: bool, say: Echo
) -> Proof:
    manifest = load_manifest(require_package(workspace.repos_dir, name).manifest_path)
    original = manifest.environment(proof.env_id)
    for at in candidate_bounds(manifest, proof.env_id):
        changed = adjust_era(workspace, name, proof.env_id, proof.culprits, at)
        if changed is None:
            continue
        runner = make_runner(workspace, name, runs=1, allow_unsafe=allow_unsafe)
        again = prove_environment(runner, changed)
        say(f"environment {proof.env_id}: tried {changed.attempts[-1][:160]}: {again.line()}")
        if again.collects:
            settle(workspace, name, changed)
            return again
    settle(workspace, name, original)
    names = ", ".join(proof.culprits)
    say(f"environment {proof.env_id}: kept as it was; no newer {names} collects")
    return proof
