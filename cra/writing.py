"""Writing to a workspace: one writer at a time, and recovery from the last one's crash.

:func:`hold_workspace` takes the workspace's writer lock (:mod:`cra.lock`) for a
command's whole run. The first time a process takes it, it checks `raw.db`
(`PRAGMA quick_check`) and cleans up after a writer that died without doing so itself:
holding the lock proves no other writer is alive, so every run still marked `running`
is marked `interrupted`, and every scratch folder a run or a pack leaves only while it
works is removed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cra.db import check_integrity
from cra.db.runs import StaleRun, interrupt_stale_runs
from cra.lock import writer_lock
from cra.workspace import Workspace

SCRATCH: tuple[tuple[str, str], ...] = (
    ("harness/validate", "*"),  # validation, grading and proving, per commit
    ("harness/worktrees", "*"),  # parent checkouts of `cra harness run`
    ("harness/envs", ".build-*"),  # environments being built
    ("repos", ".pack-*"),  # a package being packed
    ("repos", ".import-*"),  # a package being imported
    ("repos", ".corpus-import-*"),  # an export being imported
)
"""Folders (under the workspace) and patterns of scratch that lives only while its
writer works."""


@dataclass(frozen=True)
class Recovery:
    """What taking the lock cleaned up: runs marked interrupted, scratch removed."""

    runs: tuple[StaleRun, ...] = ()
    scratch: tuple[Path, ...] = ()


def stale_scratch(workspace: Workspace) -> list[Path]:
    """The scratch folders of :data:`SCRATCH` that exist in `workspace`."""
    found: list[Path] = []
    for folder, pattern in SCRATCH:
        base = workspace.root / folder
        if base.is_dir():
            found.extend(sorted(p for p in base.glob(pattern) if p.is_dir()))
    return found


def recover(workspace: Workspace) -> Recovery:
    """Check `raw.db`, close the runs a crash left open and remove their scratch; the
    caller holds the writer lock."""
    with closing(workspace.raw_db()) as conn:
        check_integrity(conn, workspace.raw_db_path)
        runs = interrupt_stale_runs(conn)
    removed = []
    for path in stale_scratch(workspace):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return Recovery(runs, tuple(removed))


@contextmanager
def hold_workspace(workspace: Workspace, command: str) -> Iterator[Recovery | None]:
    """Hold `workspace`'s writer lock for the block (WorkspaceBusy if another process
    holds it); yield what recovery did, or None when this process already held it."""
    with writer_lock(workspace.lock_path, command) as first:
        yield recover(workspace) if first else None
