"""A raw.db that was emptied or damaged is an error with a hint, never silently a new
database, and cra leaves the file as it found it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cra.errors import DatabaseError
from cra.writing import recover
from tests.helpers import run_cra


def _add_package(workspace) -> None:
    (workspace.repos_dir / "tally" / "repo").mkdir(parents=True)


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_an_emptied_raw_db_of_a_workspace_with_packages_is_refused(workspace) -> None:
    """An emptied raw.db in a workspace with packages is refused, with a hint, and left as is."""
    _add_package(workspace)
    workspace.raw_db_path.write_bytes(b"")
    before = _snapshot(workspace.raw_db_path)
    with pytest.raises(DatabaseError, match="is empty") as info:
        workspace.raw_db()
    assert "restore it from a backup" in (info.value.hint or "")
    assert _snapshot(workspace.raw_db_path) == before


def test_an_emptied_raw_db_is_one_line_from_the_cli_and_left_untouched(workspace) -> None:
    """The CLI reports an emptied raw.db in one error line and a hint, leaving the file as is."""
    _add_package(workspace)
    workspace.raw_db_path.write_bytes(b"")
    before = _snapshot(workspace.raw_db_path)
    proc = run_cra(workspace, "harness", "status", timeout=60)
    assert proc.returncode == 1
    assert "no repository mined yet" not in proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert (
        lines[0]
        == f"error: {workspace.raw_db_path}: is empty (0 bytes): the database was truncated"
    )
    assert lines[1].startswith("hint: restore it from a backup")
    assert _snapshot(workspace.raw_db_path) == before


def test_an_empty_raw_db_without_packages_becomes_a_fresh_database(workspace) -> None:
    """An empty raw.db in a workspace without packages becomes a fresh database."""
    workspace.raw_db_path.write_bytes(b"")
    workspace.raw_db().close()
    assert workspace.raw_db_path.stat().st_size > 0


def test_garbage_in_raw_db_is_refused_and_left_untouched(workspace) -> None:
    """A raw.db holding garbage is refused in one line by the CLI and left untouched."""
    _add_package(workspace)
    workspace.raw_db_path.write_bytes(b"not a database at all\n" * 100)
    before = _snapshot(workspace.raw_db_path)
    proc = run_cra(workspace, "harness", "mine", "--repo", "tally", timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].endswith("raw.db: is not an SQLite database")
    assert _snapshot(workspace.raw_db_path) == before


def test_damaged_pages_fail_the_check_a_writing_command_makes(workspace) -> None:
    """Pages that open fine but fail `PRAGMA quick_check` stop the next writing command."""
    path = workspace.raw_db_path
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, text TEXT)")
    conn.executemany(
        "INSERT INTO filler (text) VALUES (?)", [(f"row {i} " * 20,) for i in range(3000)]
    )
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    pages = len(data) // 4096
    for page in range(pages - 5, pages - 1):
        data[page * 4096 + 2000 : page * 4096 + 2100] = bytes(100)  # inside cell content
    path.write_bytes(bytes(data))
    workspace.raw_db().close()  # it still opens ...
    with pytest.raises(DatabaseError, match="is damaged") as info:
        recover(workspace)  # ... but the check a writer makes on taking the lock fails
    assert "move it aside" in (info.value.hint or "")
    before = _snapshot(path)
    proc = run_cra(workspace, "harness", "mine", "--repo", "tally", timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"error: {path}: is damaged: ")
    assert _snapshot(path) == before
