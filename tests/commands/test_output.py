"""What commands print when piped: full counts in JSON, TSV tables, --quiet."""

from __future__ import annotations

import json
import subprocess

import click
from click.testing import CliRunner

from cra.cli import cli
from cra.commands import Context
from cra.commands.output import TextTable, echo_table, notice, top_counts

STAGES = ("structural", "message", "size", "tests")


def _mined(workspace, project_repo) -> CliRunner:
    target = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(target)], check=True)
    runner = CliRunner()
    result = runner.invoke(cli, ["harness", "mine", "--repo", "tally", "--json"])
    assert result.exit_code == 0, result.output
    return runner


def test_mine_and_status_json_reasons_add_up_to_each_stages_drops(workspace, project_repo) -> None:
    """`--json` of mine and status carries every reason: per stage they sum to the drops."""
    runner = _mined(workspace, project_repo)
    mined = json.loads(runner.invoke(cli, ["harness", "mine", "--repo", "tally", "--json"]).output)
    status = json.loads(runner.invoke(cli, ["harness", "status", "--json"]).output)
    funnel = status["funnel"][0]
    for stage in STAGES:
        assert sum(funnel["reasons"][stage].values()) == funnel["dropped"][stage], stage
    assert max(len(r) for r in funnel["reasons"].values()) > 3
    rescored = runner.invoke(cli, ["harness", "mine", "--repo", "tally", "--rescore", "--json"])
    again = json.loads(rescored.output)
    for stage in STAGES:
        assert sum(again["reasons"][stage].values()) == again["dropped"][stage], stage
    assert mined["commits_in"] == funnel["commits_in"]


def test_piped_status_is_tsv_with_no_blank_lines_or_box_drawing(workspace, project_repo) -> None:
    """Piped, `harness status` prints TSV rows (header first) with no decoration."""
    runner = _mined(workspace, project_repo)
    out = runner.invoke(cli, ["harness", "status"]).output
    lines = out.splitlines()
    assert lines[0].split("\t") == [
        *("repo", "in", "structural", "message", "size", "tests", "qualifying", "yield")
    ]
    assert lines[1].split("\t")[0] == "tally"
    assert all(line.strip() for line in lines)
    assert not set(out) & set("─│┃━┏┗┡╇")
    assert any(" more" in line for line in lines if line.startswith("tally\tmessage\t"))


def test_top_counts_names_how_many_reasons_it_left_out() -> None:
    """The text summary keeps the largest counts and says how many others there are."""
    assert top_counts({"a": 1, "b": 5, "c": 2, "d": 2}) == "b ×5, c ×2, d ×2 and 1 more"
    assert top_counts({"a": 1}) == "a ×1"


def test_echo_table_piped_is_tab_separated_with_cells_escaped() -> None:
    """A table's cells go out tab-separated, a tab or line break inside a cell escaped."""

    @click.command()
    def show() -> None:
        echo_table(TextTable("t", ("name", "n"), (("a\tb", "1"), ("c\nd", "2"))))

    out = CliRunner().invoke(show).output
    assert out.splitlines() == ["name\tn", "a\\tb\t1", "c\\nd\t2"]


def test_quiet_hides_notices_but_not_output() -> None:
    """With the global --quiet a notice is not shown; without it, it goes to stderr."""

    @click.command()
    @click.pass_context
    def speak(ctx: click.Context) -> None:
        notice("note: progress")
        click.echo("result")

    for quiet, expected_err in ((True, ""), (False, "note: progress\n")):
        runner = CliRunner()
        result = runner.invoke(speak, obj=Context(None, False, quiet))
        assert (result.stdout, result.stderr) == ("result\n", expected_err)


def test_global_quiet_option_reaches_commands() -> None:
    """`cra --quiet` and `cra -q` parse at the top level."""
    for flag in ("--quiet", "-q"):
        result = CliRunner().invoke(cli, [flag, "--version"])
        assert result.exit_code == 0, result.output
