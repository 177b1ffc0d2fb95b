"""tree-sitter parsing of definitions and imports."""

from __future__ import annotations

from cra.harness.pyparse import parse_python

SOURCE = b'''"""Module doc."""
import os, sys as system
from .sibling import thing as alias, other
from ..up.mod import *
from pkg import sub


class Shape(Base):
    """A shape."""

    @property
    def area(self, scale: float = 1.0) -> float:
        "Area of it."
        def helper():
            return 1
        return 0.0

    class Inner:
        def go(self):
            pass


def top(a,
        b):
    return a + b

if TYPE_CHECKING:
    from typing import Any
    def only_when_checking(): ...
'''


def test_definitions_with_qualified_names_spans_and_docstrings() -> None:
    """Definitions get qualified names, kinds, spans with decorators, signatures and docstrings."""
    parsed = parse_python(SOURCE)
    by_name = {s.qualname: s for s in parsed.symbols}
    assert list(by_name) == [
        "Shape",
        "Shape.area",
        "Shape.area.helper",
        "Shape.Inner",
        "Shape.Inner.go",
        "top",
        "only_when_checking",
    ]
    assert by_name["Shape"].kind == "class"
    assert by_name["Shape"].docstring == "A shape."
    assert by_name["Shape"].signature == "class Shape(Base)"
    area = by_name["Shape.area"]
    assert area.kind == "method"
    assert (area.start_line, area.end_line) == (11, 16)  # the decorator line included
    assert area.signature == "def area(self, scale: float = 1.0) -> float"
    assert area.docstring == "Area of it."
    assert by_name["Shape.area.helper"].kind == "function"
    assert by_name["Shape.Inner.go"].kind == "method"
    assert by_name["top"].signature == "def top(a, b)"
    assert parsed.parse_error is None


def test_imports_with_aliases_and_relative_levels() -> None:
    """Imports keep module, name, alias and relative level, conditional ones included."""
    parsed = parse_python(SOURCE)
    got = [(i.module, i.name, i.alias, i.level) for i in parsed.imports]
    assert got == [
        ("os", None, None, 0),
        ("sys", None, "system", 0),
        ("sibling", "thing", "alias", 1),
        ("sibling", "other", None, 1),
        ("up.mod", "*", None, 2),
        ("pkg", "sub", None, 0),
        ("typing", "Any", None, 0),
    ]


def test_syntax_errors_keep_what_parses() -> None:
    """A syntax error is reported with its line, and the definitions around it still parse."""
    parsed = parse_python(
        b"def ok():\n    return 1\n\ndef broken(:\n    pass\n\nclass C:\n    x = 1\n"
    )
    names = [s.qualname for s in parsed.symbols]
    assert "ok" in names
    assert "C" in names
    assert parsed.parse_error is not None
    assert "4" in parsed.parse_error


def test_non_utf8_bytes_do_not_crash() -> None:
    """Source bytes that are not UTF-8 still parse."""
    parsed = parse_python("def caf\xe9():\n    return '\xe9'\n".encode("latin-1"))
    assert parsed.line_count == 2
