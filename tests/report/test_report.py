"""`cra report`: one offline HTML file whose charts draw every recorded row, escaped,
read from raw.db without writing to it, checked in a real headless chromium."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.db.connection import table_names
from cra.db.logs import LogAnalysis
from cra.db.train_steps import step_count
from cra.harness.funnel import funnel
from cra.report.build import write_report
from cra.workspace import Workspace
from tests.report.helpers import (
    HOSTILE,
    LOOP_CYCLES,
    LOOP_STEPS,
    Drawn,
    chromium,
    fill_workspace,
    png_variance,
    record_loop,
    run_chromium,
)


def test_empty_workspace_report_names_the_command_that_fills_each_section(
    workspace: Workspace, tmp_path: Path
) -> None:
    """A workspace that recorded nothing still gets a report; each section names its command."""
    result = write_report(workspace, tmp_path / "out")
    text = result.path.read_text()
    empty = {s.key for s in result.sections if s.empty}
    assert {"harness", "planning", "training", "registry"} <= empty  # disk is always measured
    assert "Nothing recorded yet: run <code>cra train --dataset ID --adapter NAME</code>" in text
    with closing(workspace.raw_db()) as conn:
        loop_tables = any(t.startswith("loop_") for t in table_names(conn))
    assert ("loop" in {s.key for s in result.sections}) == loop_tables
    if loop_tables:
        assert "loop" in empty and "run <code>cra loop start</code>" in text


def test_loop_charts_draw_one_point_per_cycle_and_the_chain_verifies(
    workspace: Workspace, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A recorded loop: time and tokens per cycle, each step's time, the target line one
    point per cycle, the candidates' metric per cycle that had one; decisions and events
    tabled, the chain said to verify, the hostile repository escaped."""
    fill_workspace(workspace, tiny_model_dir)
    run = record_loop(workspace)
    result = write_report(workspace, tmp_path / "out")
    loop = next(s for s in result.sections if s.key == "loop")
    assert not loop.empty
    assert loop.charts["loop-tokens"] == (LOOP_CYCLES,)
    assert loop.charts["loop-time"] == (LOOP_CYCLES,) * (len(LOOP_STEPS) + 1)
    assert loop.charts["loop-metrics"] == (LOOP_CYCLES - 1, LOOP_CYCLES)
    text = result.path.read_text()
    assert f"Loop run {run}: ended, stopped: max_cycles" in text
    assert "hash chain verifies" in text and "stop: max_cycles" in text
    assert HOSTILE not in text


def test_chart_points_match_the_rows_in_raw_db_and_raw_db_is_untouched(
    workspace: Workspace, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Every chart has one point per recorded row; writing the report leaves raw.db as it was."""
    fill_workspace(workspace, tiny_model_dir)
    before = workspace.raw_db_path.read_bytes()
    result = write_report(workspace, tmp_path / "out")
    assert workspace.raw_db_path.read_bytes() == before
    charts = {k: v for s in result.sections for k, v in s.charts.items()}
    with closing(workspace.raw_db()) as conn:
        steps = step_count(conn)
        repos = len(funnel(conn))
        totals = LogAnalysis(conn).token_totals()
    assert charts["loss"] == (12, 7) and sum(charts["loss"]) == steps
    assert set(charts["funnel"]) == {repos}
    assert charts["tokens"] == (len(totals), len(totals))
    assert charts["timeline-scope"] == (2, 1, 1)  # registered x2, promoted, rejected


def test_cli_report_json_says_where_it_wrote(
    workspace: Workspace, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`cra report --out DIR --json` writes DIR/report.html and prints its sections as JSON."""
    fill_workspace(workspace, tiny_model_dir)
    out = CliRunner().invoke(cli, ["report", "--out", str(tmp_path / "o"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["path"] == str(tmp_path / "o" / "report.html")
    assert [s["key"] for s in data["sections"]][:5] == [
        "harness",
        "planning",
        "training",
        "registry",
        "resources",
    ]


def test_hostile_strings_are_escaped_in_the_file(
    workspace: Workspace, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A reason holding </script>, <img src> and <a href> never reaches the page as markup."""
    fill_workspace(workspace, tiny_model_dir)
    text = write_report(workspace, tmp_path / "out").path.read_text()
    assert HOSTILE not in text
    assert "http://evil.invalid" in text  # it is there, as text only
    body = text.split("</head>", 1)[1]  # past the chart library's own text
    assert '<img src="http' not in body and '<a href="https' not in body
    assert text.count("<script>") == 2  # the library once, the drawing once


@pytest.mark.slow
def test_chromium_draws_every_point_offline_and_makes_no_request(
    workspace: Workspace, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Headless chromium, networking off, draws every series' points, shows a non-blank
    page, reports no CSP violation and finds no http(s) link in src/href."""
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (make test installs it with apt-get as root)")
    fill_workspace(workspace, tiny_model_dir)
    record_loop(workspace)
    result = write_report(workspace, tmp_path / "out")
    dom = run_chromium(binary, result.path, tmp_path, "--dump-dom")
    drawn = Drawn()
    drawn.feed(dom.stdout)
    expected = {k: list(v) for s in result.sections for k, v in s.charts.items()}
    assert drawn.rendered == str(len(expected)), dom.stderr[-2000:]
    assert drawn.expected == expected
    assert drawn.charts == expected
    assert {"loop-metrics", "loop-time", "loop-tokens"} <= set(drawn.charts)
    assert [u for u in drawn.links if u.startswith(("http:", "https:", "//"))] == []
    assert "Content Security Policy" not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    run_chromium(binary, result.path, tmp_path, f"--screenshot={shot}", "--window-size=800,900")
    assert png_variance(shot) > 100
