"""Databases: schema from nothing, upgrades that keep rows, refusals, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from cra.db import (
    CURATED_MIGRATIONS,
    RAW_MIGRATIONS,
    connect,
    open_curated,
    open_raw,
    schema_version,
    transaction,
)
from cra.db.migrations import Migration, migrate, split_sql, sql
from cra.db.schema_doc import DOC_PATH, render
from cra.errors import DatabaseError, SchemaTooNew

RAW_TABLES = {
    "repos",
    "commits",
    "tasks",
    "harness_runs",
    "llm_calls",
    "retrievals",
    "plans",
    "plan_scores",
    "test_runs",
    "outcomes",
    "training_datasets",
    "adapter_versions",
    "adapter_events",
    "train_steps",
}


def tables(conn: sqlite3.Connection) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    }


def test_fresh_raw_db_has_the_whole_schema(tmp_path: Path) -> None:
    """A new raw database gets every table and every migration, recorded in order."""
    conn = open_raw(tmp_path / "raw.db")
    assert RAW_TABLES <= tables(conn)
    assert schema_version(conn) == len(RAW_MIGRATIONS)
    applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert applied == list(range(1, len(RAW_MIGRATIONS) + 1))


def test_fresh_curated_db(tmp_path: Path) -> None:
    """A new curated database gets its blob, symbol and import tables at the latest version."""
    conn = open_curated(tmp_path / "curated.db")
    assert {"blobs", "symbols", "imports"} <= tables(conn)
    assert schema_version(conn) == len(CURATED_MIGRATIONS)


def test_pragmas_are_set(tmp_path: Path) -> None:
    """Connections use WAL, enforce foreign keys and take the busy timeout given."""
    conn = open_raw(tmp_path / "raw.db", busy_timeout_ms=4321)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 4321


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    """A row pointing at a missing parent row is refused."""
    conn = open_raw(tmp_path / "raw.db")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO tasks (task_id, repo_id, commit_id, task_text, created_at) "
            "VALUES ('t', 999, 999, 'x', 'now')"
        )


def test_only_one_active_version_per_adapter(tmp_path: Path) -> None:
    """An adapter can have only one active version at a time."""
    conn = open_raw(tmp_path / "raw.db")
    row = (
        "INSERT INTO adapter_versions (name, version, status, path, base_model, "
        "base_model_hash, tokenizer_hash, method, created_at) "
        "VALUES ('scope', ?, 'active', 'p', 'b', 'h', 't', 'sft', 'now')"
    )
    conn.execute(row, (1,))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(row, (2,))


@pytest.mark.parametrize("start", range(1, len(RAW_MIGRATIONS) + 1))
def test_upgrade_from_every_older_raw_schema_keeps_rows(tmp_path: Path, start: int) -> None:
    """A raw database at any older version upgrades to the latest and keeps its rows."""
    path = tmp_path / "raw.db"
    conn = connect(path, busy_timeout_ms=1000)
    migrate(conn, RAW_MIGRATIONS, path=path, target=start)
    conn.execute("INSERT INTO repos (name, added_at) VALUES ('attrs', '2026-01-01T00:00:00')")
    conn.close()
    conn = open_raw(path)
    assert schema_version(conn) == len(RAW_MIGRATIONS)
    assert [r[0] for r in conn.execute("SELECT name FROM repos")] == ["attrs"]


V1 = Migration(1, "people", sql("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT);"))
V2 = Migration(
    2,
    "people get an upper-case name",
    (
        "ALTER TABLE people ADD COLUMN shout TEXT",
        lambda conn: conn.execute("UPDATE people SET shout = upper(name)"),
    ),
)


def test_upgrade_runs_python_steps_on_existing_rows(tmp_path: Path) -> None:
    """Python steps of a migration run on existing rows, and applied migrations never rerun."""
    path = tmp_path / "x.db"
    conn = connect(path, busy_timeout_ms=1000)
    assert migrate(conn, (V1,), path=path) == [1]
    conn.execute("INSERT INTO people (name) VALUES ('ada'), ('alan')")
    assert migrate(conn, (V1, V2), path=path) == [2]
    assert [r[0] for r in conn.execute("SELECT shout FROM people ORDER BY id")] == [
        "ADA",
        "ALAN",
    ]
    assert migrate(conn, (V1, V2), path=path) == []


def test_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    """A migration that fails midway is rolled back whole, leaving the previous version."""
    path = tmp_path / "x.db"
    conn = connect(path, busy_timeout_ms=1000)
    migrate(conn, (V1,), path=path)
    broken = Migration(
        2, "broken", ("ALTER TABLE people ADD COLUMN age INTEGER", "SELECT * FROM nope")
    )
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, (V1, broken), path=path)
    assert schema_version(conn) == 1
    columns = [r[1] for r in conn.execute("PRAGMA table_info(people)")]
    assert "age" not in columns


def test_gap_in_versions_is_a_programming_error(tmp_path: Path) -> None:
    """Migration versions with a gap are refused as a programming error."""
    conn = connect(tmp_path / "x.db", busy_timeout_ms=1000)
    with pytest.raises(ValueError, match="expected 2"):
        migrate(conn, (V1, Migration(3, "x", ())), path=tmp_path / "x.db")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer cra is refused with a hint to upgrade cra."""
    path = tmp_path / "raw.db"
    open_raw(path).execute(f"PRAGMA user_version = {len(RAW_MIGRATIONS) + 5}")
    with pytest.raises(SchemaTooNew) as info:
        open_raw(path)
    assert info.value.found == len(RAW_MIGRATIONS) + 5
    assert "upgrade cra" in (info.value.hint or "")


def test_not_sqlite_is_refused(tmp_path: Path) -> None:
    """A file that is not SQLite is refused as not an SQLite database."""
    path = tmp_path / "raw.db"
    path.write_text("this is a text file, not a database\n" * 20)
    with pytest.raises(DatabaseError, match="not an SQLite database"):
        open_raw(path)


def test_split_sql_keeps_trigger_bodies_whole() -> None:
    """Splitting a SQL script into statements keeps each trigger body whole."""
    script = """
    CREATE TABLE a (x INT);
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        UPDATE a SET x = x + 1;
        SELECT 1;
    END;
    """
    parts = split_sql(script)
    assert len(parts) == 2
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")


def _writer(path: str, who: str, count: int) -> None:
    conn = open_raw(Path(path), busy_timeout_ms=30_000)
    for i in range(count):
        with transaction(conn):
            conn.execute("INSERT INTO repos (name, added_at) VALUES (?, 'now')", (f"{who}-{i}",))
            conn.execute(
                "INSERT INTO adapter_events (name, event, created_at) VALUES (?, 'x', 'now')",
                (who,),
            )
    conn.close()


def test_two_writer_processes_lose_nothing(tmp_path: Path) -> None:
    """Two processes writing one database at once lose no row."""
    path = tmp_path / "raw.db"
    open_raw(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), who, 300)) for who in ("a", "b")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    conn = open_raw(path)
    assert conn.execute("SELECT count(*) FROM repos").fetchone()[0] == 600
    per_writer = dict(
        conn.execute("SELECT name, count(*) FROM adapter_events GROUP BY name").fetchall()
    )
    assert per_writer == {"a": 300, "b": 300}


def test_schema_reference_is_up_to_date() -> None:
    """The schema reference in docs/schema.md matches the schema the migrations build."""
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/schema.md is stale: run `python -m cra.db.schema_doc`"
    )
