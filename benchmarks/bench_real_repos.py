"""cra on the real histories of `../shared/real-repos/`: pack, mine and validate each with
default settings, and print one table.

Per repository: pack seconds, wheels, eras usable/unusable, commits, qualifying commits and
the share of them in a usable era and in an environment proved to collect its era's tests
(`cra env prove --adjust`), commits validated, each verdict's count, the verified
share (among commits whose verdict judges the task, i.e. not an infrastructure or
environment failure, and among all validated), and seconds per validated commit. The
baseline measured in the same run is the bare mining pass, so the last column reads as
"validation costs X times the mining of the whole history".

Needs the package registry (wheels come from the index) and a sandbox.
Usage: python benchmarks/bench_real_repos.py [--limit N] [--jobs J] [--repos a,b] [--keep DIR]
  --limit N   validate N qualifying commits per repository, spread over its history
              (oldest and newest included); default: all of them
  --keep DIR  keep the workspace in DIR (re-running reuses packs and verdicts)
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cra.db.commits import qualified_commits
from cra.harness.mine import mine_repo
from cra.harness.prove import adjust_failing, collecting_share, prove_package
from cra.harness.validate import ValidateOptions, validate_repo
from cra.harness.verdicts import NOT_JUDGED
from cra.repos.layout import package_path
from cra.repos.manifest import load_manifest
from cra.repos.pack import PackOptions, pack
from cra.workspace import Workspace, init_workspace

BUNDLES = Path(__file__).resolve().parents[1].parent / "shared" / "real-repos"


@dataclass
class Row:
    """One repository's figures."""

    name: str
    pack_s: float = 0.0
    wheels: int = 0
    usable: int = 0
    unusable: int = 0
    commits: int = 0
    qualifying: int = 0
    in_usable: int = 0
    collecting: int = 0
    validated: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    validate_s: float = 0.0
    mine_s: float = 0.0
    error: str = ""

    def verified_share(self) -> tuple[str, str]:
        """Verified among judged, and among all validated, as percentages."""
        verified = self.verdicts.get("verified", 0)
        judged = sum(n for v, n in self.verdicts.items() if v not in NOT_JUDGED)
        of_judged = f"{100 * verified / judged:.1f}%" if judged else "-"
        of_all = f"{100 * verified / self.validated:.1f}%" if self.validated else "-"
        return of_judged, of_all


def _pack(workspace: Workspace, name: str, tmp: Path, row: Row) -> None:
    package = package_path(workspace, name)
    if not package.manifest_path.exists():
        source = tmp / f"{name}-src"
        if not source.exists():
            subprocess.run(
                ["git", "clone", "-q", str(BUNDLES / f"{name}.bundle"), str(source)], check=True
            )
        started = time.perf_counter()
        pack(workspace, str(source), PackOptions(name=name), echo=lambda _m: None)
        row.pack_s = time.perf_counter() - started
    manifest = load_manifest(package.manifest_path)
    row.wheels = len(manifest.wheels)
    row.usable = sum(e.usable for e in manifest.environments)
    row.unusable = len(manifest.environments) - row.usable


def _mine(workspace: Workspace, name: str, row: Row) -> None:
    started = time.perf_counter()
    mine_repo(workspace, name)
    row.mine_s = time.perf_counter() - started
    manifest = load_manifest(package_path(workspace, name).manifest_path)
    with closing(workspace.raw_db()) as conn:
        repo_id = conn.execute("SELECT id FROM repos WHERE name = ?", (name,)).fetchone()[0]
        row.commits = conn.execute(
            "SELECT count(*) FROM commits WHERE repo_id = ?", (repo_id,)
        ).fetchone()[0]
        commits = qualified_commits(conn, repo_id, None)
    row.qualifying = len(commits)
    row.in_usable = sum(
        manifest.environment_for(datetime.fromisoformat(c.authored_at)).usable for c in commits
    )


def _prove(workspace: Workspace, name: str, row: Row) -> None:
    proofs = adjust_failing(workspace, name, prove_package(workspace, name))
    row.collecting = collecting_share(workspace, name, proofs).collecting


def _validate(workspace: Workspace, name: str, row: Row, limit: int | None, jobs: int) -> None:
    started = time.perf_counter()
    summary = validate_repo(workspace, name, ValidateOptions(sample=limit, jobs=jobs))
    row.validate_s = time.perf_counter() - started
    with closing(workspace.raw_db()) as conn:
        verdicts = conn.execute(
            "SELECT o.verdict, count(*) FROM outcomes o JOIN tasks t USING (task_id) "
            "JOIN repos r ON r.id = t.repo_id WHERE r.name = ? AND o.kind = 'validation' "
            "AND o.id = (SELECT max(id) FROM outcomes WHERE task_id = o.task_id "
            "AND kind = 'validation') GROUP BY o.verdict",
            (name,),
        ).fetchall()
    row.verdicts = {v: n for v, n in verdicts}
    row.validated = sum(row.verdicts.values())
    row.validate_s /= max(1, summary.tasks_done)


def _print(rows: list[Row]) -> None:
    head = (
        "repo",
        "pack s",
        "wheels",
        "eras ok/unusable",
        "commits",
        "qualifying",
        "in usable era",
        "in collecting env",
        "validated",
        "verified (judged / all)",
        "s per commit",
        "vs mining",
        "verdicts",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        if r.error:
            print(f"| {r.name} | error: {r.error} |")
            continue
        judged, every = r.verified_share()
        usable = f"{100 * r.in_usable / r.qualifying:.1f}%" if r.qualifying else "-"
        collecting = f"{100 * r.collecting / r.qualifying:.1f}%" if r.qualifying else "-"
        ratio = f"{r.validate_s / r.mine_s:.1f}x" if r.mine_s else "-"
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(r.verdicts.items()))
        cells = (
            r.name,
            f"{r.pack_s:.0f}",
            r.wheels,
            f"{r.usable}/{r.unusable}",
            r.commits,
            r.qualifying,
            usable,
            collecting,
            r.validated,
            f"{judged} / {every}",
            f"{r.validate_s:.1f}",
            ratio,
            verdicts,
        )
        print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--repos", default=None)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    names = (
        args.repos.split(",") if args.repos else sorted(p.stem for p in BUNDLES.glob("*.bundle"))
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = args.keep or tmp / "ws"
        workspace = init_workspace(root).workspace
        rows = []
        for name in names:
            row = Row(name)
            try:
                _pack(workspace, name, tmp, row)
                _mine(workspace, name, row)
                _prove(workspace, name, row)
                _validate(workspace, name, row, args.limit, args.jobs)
            except Exception as exc:  # a benchmark goes on to the next repository
                row.error = str(exc).splitlines()[0][:200]
            rows.append(row)
            print(f"{name}: done", flush=True)
        _print(rows)


if __name__ == "__main__":
    main()
