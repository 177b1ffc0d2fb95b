"""The writer lock of the command layer: every command that writes to a workspace runs
inside :func:`writing`.

Those commands are `cra harness mine|run|validate|grade`, `cra repo pack|import|remove` and
`cra env build|prove`. A second one started on the same workspace while the first runs
refuses at once with one line naming the first (`another cra harness validate (pid N,
…) holds this workspace`); commands that only read (`status`, `list`, `show`, `verify`)
take no lock. Taking the lock also recovers from a writer that crashed (see
:mod:`cra.writing`) and says so on stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cra.commands import Context
from cra.commands.output import notice
from cra.harness.reconcile import Reconciled, reconcile_history
from cra.workspace import Workspace
from cra.writing import Recovery, hold_workspace


def echo_recovery(recovery: Recovery) -> None:
    """Say on stderr what taking the lock cleaned up after a crashed writer."""
    for run in recovery.runs:
        notice(
            f"note: run {run.id} ({run.kind}, started {run.started_at}) was left running by a "
            "process that is gone: marked interrupted"
        )
    if recovery.scratch:
        notice(f"note: removed {len(recovery.scratch)} scratch folders left by interrupted runs")


def echo_reconciled(result: Reconciled) -> None:
    """Say on stderr which recorded commits left (or came back to) the history."""
    if result.gone:
        notice(
            f"note: {result.gone} recorded commits of {result.repo} are gone from its "
            "history (re-packed): they are no longer planned, validated or counted"
        )
    if result.returned:
        notice(f"note: {result.returned} commits of {result.repo} are back in its history")


def reconcile(workspace: Workspace, repo: str) -> Reconciled:
    """Reconcile `repo`'s recorded commits with its package's history, saying what changed."""
    result = reconcile_history(workspace, repo)
    echo_reconciled(result)
    return result


@contextmanager
def writing(ctx: Context, command: str, *, repo: str | None = None) -> Iterator[Workspace]:
    """Open the workspace and hold its writer lock for the block; with `repo`, first bring
    that repository's recorded commits in step with its package's history."""
    workspace = ctx.workspace()
    with hold_workspace(workspace, command) as recovery:
        if recovery is not None:
            echo_recovery(recovery)
        if repo is not None:
            reconcile(workspace, repo)
        yield workspace
