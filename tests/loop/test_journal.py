"""The loop's journal: every event chained to the one before by sha256, append-only,
and `cra loop verify` naming the first broken link."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from cra.db import loop as store
from tests.helpers import run_cra


def _journal(workspace, n: int = 5) -> int:
    with closing(workspace.raw_db()) as conn:
        run_id = store.start_run(conn, {"max_cycles": 1})
        for i in range(n):
            store.add_event(conn, run_id, "note", {"i": i})
    return run_id


def test_a_fresh_journal_verifies(workspace) -> None:
    """Each event holds the previous event's sha256, and the chain verifies."""
    _journal(workspace)
    with closing(workspace.raw_db()) as conn:
        events = store.events(conn)
        checked, broken = store.verify_journal(conn)
    assert [e.prev_sha256 for e in events[1:]] == [e.sha256 for e in events[:-1]]
    assert events[0].prev_sha256 == ""
    assert (checked, broken) == (6, None)
    result = run_cra(workspace, "loop", "verify")
    assert result.returncode == 0 and "journal holds: 6 events" in result.stdout


def test_events_cannot_be_updated(workspace) -> None:
    """An UPDATE of a journal row is refused by the database."""
    _journal(workspace)
    with closing(workspace.raw_db()) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE loop_events SET payload = '{}' WHERE id = 2")


def test_a_changed_payload_is_named(workspace) -> None:
    """An event whose content was changed (trigger dropped) is named as the broken link."""
    _journal(workspace)
    conn = sqlite3.connect(workspace.raw_db_path)
    conn.execute("DROP TRIGGER loop_events_no_update")
    conn.execute("""UPDATE loop_events SET payload = '{"i":99}' WHERE id = 4""")
    conn.commit()
    conn.close()
    result = run_cra(workspace, "loop", "verify")
    assert result.returncode == 1
    assert "journal broken at event 4: its content does not match its sha256" in result.stdout
    assert "(3 events before it hold)" in result.stdout


def test_a_deleted_event_is_named(workspace) -> None:
    """Deleting an event breaks the link of the one after it, which verify names."""
    _journal(workspace)
    conn = sqlite3.connect(workspace.raw_db_path)
    conn.execute("DELETE FROM loop_events WHERE id = 3")
    conn.commit()
    conn.close()
    with closing(workspace.raw_db()) as conn:
        checked, broken = store.verify_journal(conn)
    assert checked == 2 and broken is not None
    assert (broken.event_id, broken.problem) == (4, "does not follow the event before it")
    result = run_cra(workspace, "loop", "verify", "--json")
    assert result.returncode == 1 and '"event_id": 4' in result.stdout
