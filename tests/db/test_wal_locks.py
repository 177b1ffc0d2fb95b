"""Opening a database never drops the locks of a connection this process already has on
it, so another process closing its own connection cannot delete the WAL under it."""

from __future__ import annotations

import subprocess
import sys
from contextlib import closing
from pathlib import Path

from cra.db.connection import connect

READ_AND_CLOSE = (
    "import sqlite3, sys\n"
    "conn = sqlite3.connect(sys.argv[1])\n"
    "conn.execute('SELECT count(*) FROM t').fetchall()\n"
    "conn.close()\n"
)


def test_a_second_connection_keeps_the_first_ones_wal_from_another_process(
    tmp_path: Path,
) -> None:
    """With one connection open and writing, opening and closing another in the same
    process, then a reader in another process closing its connection, leaves the WAL in
    place (the reader was not the last connection) and every row written afterwards."""
    path = tmp_path / "x.db"
    with closing(connect(path, busy_timeout_ms=5000)) as first:
        first.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, pad TEXT)")
        for _ in range(100):
            first.execute("INSERT INTO t (pad) VALUES (?)", ("x" * 500,))
        connect(path, busy_timeout_ms=5000).close()
        subprocess.run([sys.executable, "-c", READ_AND_CLOSE, str(path)], check=True)
        assert path.with_name("x.db-wal").exists()
        for _ in range(100):
            first.execute("INSERT INTO t (pad) VALUES (?)", ("y" * 500,))
    with closing(connect(path, busy_timeout_ms=5000)) as conn:
        assert [tuple(r) for r in conn.execute("PRAGMA quick_check")] == [("ok",)]
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 200
