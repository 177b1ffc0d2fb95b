"""Showing text that came from a repository: commit subjects, file names, reasons.

A repository is written by strangers; its text can hold terminal escape sequences that
recolour, rewrite or hide what cra prints. Stored values stay exactly as they were; only
what is shown is escaped, with :func:`printable`.
"""

from __future__ import annotations

import unicodedata

_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    # Cc: C0/C1 controls (ESC, CSI, BEL, ...); Cf: format characters such as the bidi
    # overrides that reorder a line; Cs: lone surrogates from undecodable bytes; Zl, Zp:
    # line and paragraph separators.
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control, format and surrogate character escaped (`\\x1b`,
    `\\u202e`); printable characters, non-ASCII letters included, are kept. With
    `keep_newlines`, line breaks stay line breaks."""
    if text.isprintable():
        return text
    return "".join(
        char if not _unsafe(char) or (keep_newlines and char == "\n") else _escape(char)
        for char in text
    )
