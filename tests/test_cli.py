"""The CLI surface and its error boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cra import __version__
from cra.cli import cli


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_version() -> None:
    """cra --version prints the package version."""
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_the_commands_that_exist() -> None:
    """cra --help lists the commands that exist."""
    result = run("--help")
    assert result.exit_code == 0
    for command in ("init", "demo"):
        assert f"  {command} " in result.output


def test_init_then_again(tmp_path: Path) -> None:
    """init creates cra.toml, and a second init says there is nothing to do."""
    first = run("init", str(tmp_path / "ws"))
    assert first.exit_code == 0
    assert "created cra.toml" in first.output
    second = run("init", str(tmp_path / "ws"))
    assert second.exit_code == 0
    assert "nothing to do" in second.output


def test_init_without_path_uses_cra_home() -> None:
    """init with no path creates the workspace at CRA_HOME."""
    result = run("init")
    assert result.exit_code == 0
    assert (Path(os.environ["CRA_HOME"]) / "cra.toml").is_file()


def test_bad_config_is_one_line_with_line_number(workspace) -> None:
    """A bad cra.toml value is one error line naming the setting and its line number."""
    (workspace.root / "cra.toml").write_text("[db]\nbusy_timeout_ms = 'x'\n")
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "line 2" in result.output and "db.busy_timeout_ms" in result.output
    assert "Traceback" not in result.output


def _cra(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "cra", *args], capture_output=True, text=True, env=env
    )


def test_invalid_workspace_config_is_one_line_and_nonzero(tmp_path: Path) -> None:
    # A real process: the console entry point, stderr and exit code as a user sees them.
    """An invalid workspace config exits 1 with one error line and a hint on stderr."""
    (tmp_path / "not-a-ws").mkdir()
    (tmp_path / "not-a-ws" / "cra.toml").write_text("[db]\nbusy_timeout_ms = -1\n")
    result = _cra("--workspace", str(tmp_path / "not-a-ws"), "init")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "busy_timeout_ms" in lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_debug_flag_and_env_show_the_traceback(tmp_path: Path) -> None:
    """--debug or CRA_DEBUG=1 shows the full traceback of an error."""
    (tmp_path / "cra.toml").write_text("[db]\nbusy_timeout_ms = -1\n")
    flagged = _cra("--debug", "--workspace", str(tmp_path), "init")
    assert flagged.returncode != 0 and "Traceback" in flagged.stderr
    env = _cra("--workspace", str(tmp_path), "init", env_extra={"CRA_DEBUG": "1"})
    assert env.returncode != 0 and "Traceback" in env.stderr


def test_not_sqlite_database_is_one_line(workspace) -> None:
    """A raw.db that is not SQLite is a one-line error."""
    workspace.raw_db_path.write_text("garbage" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(workspace.raw_db_path) + suffix).unlink(missing_ok=True)
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1
    assert "not an SQLite database" in result.output
    assert "Traceback" not in result.output


def test_newer_schema_is_one_line(workspace) -> None:
    """A database schema newer than this cra knows is a one-line error."""
    conn = workspace.raw_db()
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1
    assert "newer than this cra knows" in result.output


def test_workspace_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """A workspace path that is a file is refused with exit code 2."""
    target = tmp_path / "file"
    target.write_text("x")
    result = _cra("--workspace", str(target), "init")
    assert result.returncode == 2
    assert "is a file" in result.stderr
    assert "Traceback" not in result.stderr
