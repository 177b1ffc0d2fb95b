"""The collection proof names the installed distribution whose own code failed."""

from __future__ import annotations

from pathlib import Path

from cra.harness.prove import culprits

TRACEBACK = """Traceback (most recent call last):
  File "/x/envs/k/lib/python3.11/site-packages/_pytest/config/__init__.py", line 5
  File "/x/envs/k/lib/python3.11/site-packages/hypothesis/internal/compat.py", line 9
    from collections import Sequence
E   ImportError: cannot import name 'Sequence' from 'collections'
"""


def _env(tmp_path: Path) -> Path:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for dist, top in (("hypothesis-3.8.2", "hypothesis"), ("pytest-7.2.1", "_pytest")):
        info = site / f"{dist}.dist-info"
        info.mkdir(parents=True)
        (info / "RECORD").write_text(f"{top}/__init__.py,sha256=x,1\n{dist}.dist-info/RECORD,,\n")
    return tmp_path


def test_a_dependency_failing_in_its_own_code_is_named(tmp_path: Path) -> None:
    """hypothesis's file in the traceback makes it the culprit, with the error line;
    pytest's own frames never do."""
    found = culprits(_env(tmp_path), TRACEBACK)
    assert found == {
        "hypothesis": "E   ImportError: cannot import name 'Sequence' from 'collections'"
    }


def test_an_error_in_the_project_names_no_dependency(tmp_path: Path) -> None:
    """A failure in the project's own files is not a dependency's fault."""
    text = 'File "/srv/project/src/attr/_make.py", line 3\nTypeError: bad'
    assert culprits(_env(tmp_path), text) == {}
