"""`cra demo`: the whole flow on a bundled sample repository, step by step.

The sample is the `tally` project that `cra.fixtures.history` builds: a real git history
of a small Python package with bug fixes and their tests, refactors, docs and noise.
Each step says what it did; re-running reuses what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from cra.db import schema_version
from cra.workspace import Workspace, init_workspace

Echo = Callable[[str], None]

SAMPLE_NAME = "tally"


def sample_source(root: Path) -> Path:
    """Where the demo keeps the sample repository's source checkout."""
    return root / "sources" / SAMPLE_NAME


def _build_sample(root: Path, echo: Echo) -> Path:
    from cra.fixtures.history import build_project_repo

    source = sample_source(root)
    if (source / ".git").exists():
        echo(f"  sample repository already at {source}")
        return source
    source.parent.mkdir(parents=True, exist_ok=True)
    repo = build_project_repo(source, extra_commits=60)
    echo(f"  built sample repository {source}: {len(repo.commits)} commits")
    return source


def _show_databases(workspace: Workspace, echo: Echo) -> None:
    with closing(workspace.raw_db()) as raw:
        version = schema_version(raw)
        counts = {
            table: raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("repos", "commits", "tasks")
        }
    with closing(workspace.curated_db()) as curated:
        curated_version = schema_version(curated)
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    echo(f"  raw.db schema v{version}: {summary}")
    echo(f"  curated.db schema v{curated_version}")


def run_demo(path: Path, *, echo: Echo) -> Workspace:
    """Run every demo step in a workspace at `path` and return the workspace."""
    echo(f"[1] workspace at {Path(path).absolute()}")
    report = init_workspace(path)
    workspace = report.workspace
    echo(f"  {'created ' + str(len(report.created)) + ' paths' if report.created else 'reused'}")
    echo("[2] sample repository")
    _build_sample(workspace.root, echo)
    echo("[3] databases")
    _show_databases(workspace, echo)
    echo("done: the funnel is empty until the sample repository is mined")
    return workspace
