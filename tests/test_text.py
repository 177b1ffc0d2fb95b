"""Repository text is shown with control characters escaped; stored values stay raw."""

from __future__ import annotations

import pytest

from cra.cli import python_problem
from cra.text import printable
from tests.helpers import run_cra


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Fix \x1b[2J\x1b[31mred", "Fix \\x1b[2J\\x1b[31mred"),
        ("bell\x07 and NUL\x00", "bell\\x07 and NUL\\x00"),
        ("C1 CSI \x9b31m", "C1 CSI \\x9b31m"),
        ("bidi \u202eevil", "bidi \\u202eevil"),
        ("two\nlines\r", "two\\nlines\\r"),
        ("Ünïcödé naïve 名前 ok", "Ünïcödé naïve 名前 ok"),
    ],
)
def test_printable_escapes_controls_and_keeps_letters(raw: str, shown: str) -> None:
    """printable escapes control characters and keeps letters."""
    assert printable(raw) == shown


def test_printable_can_keep_line_breaks() -> None:
    """printable can keep line breaks while escaping other controls."""
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


def test_errors_show_repository_text_escaped(workspace) -> None:
    """Errors show repository-supplied text with terminal controls escaped."""
    proc = run_cra(workspace, "harness", "mine", "--repo", "x\x1b]0;owned\x07y", timeout=60)
    assert proc.returncode != 0
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "\\x1b]0;owned\\x07" in proc.stderr


def test_python_older_than_3_11_4_is_refused_in_one_line() -> None:
    """Python older than 3.11.4 is refused in one line."""
    assert python_problem((3, 11, 4)) is None
    assert python_problem((3, 12, 0)) is None
    problem = python_problem((3, 11, 3))
    assert problem == (
        "cra needs Python 3.11.4 or newer (tarfile extraction filters); this is 3.11.3"
    )
