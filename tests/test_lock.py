"""One writer at a time: the workspace's advisory lock, held by real processes."""

from __future__ import annotations

import os
import signal

import pytest

from cra.lock import WorkspaceBusy, read_holder, writer_lock
from tests.helpers import run_cra
from tests.workspace_helpers import hold_lock


def test_a_second_writer_refuses_naming_the_first(workspace) -> None:
    """A second writer is refused, naming the first holder's command, pid and start."""
    holder = hold_lock(workspace.lock_path, "cra harness validate")
    try:
        with pytest.raises(WorkspaceBusy) as info, writer_lock(workspace.lock_path, "cra x"):
            pass
    finally:
        holder.communicate("")
    assert info.value.holder.pid == holder.pid
    assert str(info.value).startswith(f"another cra harness validate (pid {holder.pid} on ")
    assert ", started " in str(info.value)


def test_kill_9_of_the_holder_leaves_no_stale_lock(workspace) -> None:
    """A lock holder killed with SIGKILL leaves no stale lock behind."""
    holder = hold_lock(workspace.lock_path, "cra harness run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate()
    with writer_lock(workspace.lock_path, "cra harness mine") as first:
        assert first is True
        assert read_holder(workspace.lock_path).command == "cra harness mine"


def test_the_lock_is_reentrant_within_one_process(workspace) -> None:
    """The writer lock is reentrant in one process; the inner block keeps the outer's lock."""
    with writer_lock(workspace.lock_path, "outer") as outer:
        with writer_lock(workspace.lock_path, "inner") as inner:
            assert (outer, inner) == (True, False)
        # The inner block ending keeps the outer one's lock.
        holder_cmd = read_holder(workspace.lock_path).command
    assert holder_cmd == "outer"
    with writer_lock(workspace.lock_path, "again") as again:
        assert again is True


def test_a_writing_command_refuses_in_one_line_while_another_runs(workspace) -> None:
    """A writing command refuses in one line, naming the holder, while another holds the lock."""
    holder = hold_lock(workspace.lock_path, "cra harness validate")
    try:
        proc = run_cra(workspace, "harness", "mine", "--repo", "tally", timeout=60)
    finally:
        holder.communicate("")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error: another cra harness validate (pid {holder.pid}")
    assert first.endswith("holds this workspace")


def test_reading_commands_take_no_lock(workspace) -> None:
    """Reading commands run while another command holds the writer lock."""
    holder = hold_lock(workspace.lock_path, "cra harness validate")
    try:
        proc = run_cra(workspace, "harness", "status", timeout=60)
    finally:
        holder.communicate("")
    assert proc.returncode == 0, proc.stderr
    assert "no repository mined yet" in proc.stdout
