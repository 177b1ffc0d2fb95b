"""README.md and the command line say the same thing: every `cra ...` command it names
exists, and every option it gives a command is that command's."""

from __future__ import annotations

from pathlib import Path

from cra.cli import cli
from tests.helpers import readme_cli_problems

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_command_and_option_the_readme_names_exists() -> None:
    """Each `cra ...` in README code (spans and blocks) resolves in the click tree, with
    each --option next to it belonging to that command or the `cra` group."""
    problems, checked = readme_cli_problems(README.read_text(encoding="utf-8"), cli)
    assert problems == []
    assert checked > 40


def test_a_made_up_command_or_option_is_reported() -> None:
    """The check fails on a command that does not exist and on another command's option."""
    text = (
        "Run `cra repo frobnicate NAME`, then `cra repo list --repo NAME [--json]`.\n"
        "```sh\ncra harness mine --repo NAME --rescore --nope --debug  # cra serve --port 1\n```\n"
    )
    problems, checked = readme_cli_problems(text, cli)
    assert checked == 4
    assert problems == [
        "`cra harness mine` has no option --nope",
        "`cra repo frobnicate NAME`: no such command",
        "`cra repo list` has no option --repo",
    ]
