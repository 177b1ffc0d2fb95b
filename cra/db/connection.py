"""Opening SQLite databases the one way cra does it, and writing in transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cra.errors import DatabaseError

SQLITE_MAGIC = b"SQLite format 3\x00"

DAMAGED_HINT = (
    "restore it from a backup, or move it aside to start a fresh one "
    "(then mine the repositories again)"
)


def refuse_emptied(path: Path) -> None:
    """Raise DatabaseError if `path` exists and is empty (0 bytes).

    An empty file where a database was expected is a truncated or lost database: opening
    it would silently create a new, empty one over it. The file is left as it is.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DatabaseError(
            "is empty (0 bytes): the database was truncated", path=path, hint=DAMAGED_HINT
        )


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Raise DatabaseError unless `PRAGMA quick_check` finds the database sound."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"is damaged: {exc}", path=path, hint=DAMAGED_HINT) from exc
    if rows != ["ok"]:
        lines = [ln for r in rows for ln in r.splitlines() if ln and not ln.startswith("***")]
        first = lines[0] if lines else "quick_check failed"
        raise DatabaseError(f"is damaged: {first}", path=path, hint=DAMAGED_HINT)


def connect(
    path: Path, *, busy_timeout_ms: int, check_same_thread: bool = True
) -> sqlite3.Connection:
    """Open `path` with busy_timeout (set first), WAL, foreign keys on, rows as `sqlite3.Row`.

    The connection is in autocommit mode: group writes with :func:`transaction`.
    The file is never opened outside SQLite while it may be in use: POSIX locks belong to
    the process, so closing any descriptor of the file drops the locks of every
    connection this process has on it, and another process closing its connection would
    then take itself for the last one, checkpoint and delete the WAL under the live
    connection ("database disk image is malformed").
    `check_same_thread=False` lets a thread other than the opener close it (the caller
    still uses it from one thread at a time).
    """
    if busy_timeout_ms <= 0:
        raise ValueError(f"busy_timeout_ms must be > 0, got {busy_timeout_ms!r}")
    path = Path(path)
    if path.is_dir():
        raise DatabaseError("is a directory, not a database file", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=busy_timeout_ms / 1000,
            check_same_thread=check_same_thread,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.OperationalError as exc:
        raise DatabaseError(f"cannot open: {exc}", path=path) from exc
    except sqlite3.DatabaseError as exc:
        if not _has_magic(path):
            raise DatabaseError("is not an SQLite database", path=path, hint=DAMAGED_HINT) from exc
        raise DatabaseError(f"is damaged: {exc}", path=path, hint=DAMAGED_HINT) from exc
    conn.row_factory = sqlite3.Row
    return conn


def _has_magic(path: Path) -> bool:
    """Whether `path` starts as an SQLite database does. Only read once SQLite refused the
    file: closing a descriptor of a database file this process has open in a connection
    drops that connection's POSIX locks (see :func:`connect`)."""
    with path.open("rb") as fh:
        return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def connect_readonly(path: Path, *, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open an existing database at `path` read-only (`mode=ro`): nothing can be written,
    no schema is migrated, and the file is never created."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseError("does not exist", path=path)
    refuse_emptied(path)
    try:
        conn = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            timeout=busy_timeout_ms / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot open read-only: {exc}", path=path) from exc
    conn.row_factory = sqlite3.Row
    return conn


def table_names(conn: sqlite3.Connection) -> frozenset[str]:
    """The tables the database holds (its own bookkeeping tables left out)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return frozenset(str(r[0]) for r in rows)


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block's reads in one read transaction: every statement in it sees the
    same committed state of the database, whatever a writer commits meanwhile."""
    conn.execute("BEGIN DEFERRED")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # nothing was written: ending it releases the snapshot


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction (BEGIN IMMEDIATE); roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
