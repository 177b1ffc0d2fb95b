"""What a commit really changed: files with touched lines, and the definitions touched.

Gold symbols are the innermost definitions whose spans contain a deleted line (in the
parent) or an added line (in the commit): added, deleted and modified ones all count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cra.git import git_bytes
from cra.harness.pyparse import Symbol

_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    '"': '"',
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "r": "\r",
    "v": "\v",
}


@dataclass(frozen=True)
class FileChange:
    """One file of a diff: its old and new path (None when added/deleted) and the
    line numbers deleted from the old file and added to the new one."""

    old_path: str | None
    new_path: str | None
    old_lines: tuple[int, ...]
    new_lines: tuple[int, ...]

    @property
    def path(self) -> str:
        """The path the file has after the change (before it, for a deletion)."""
        return self.new_path or self.old_path or ""

    @property
    def renamed(self) -> bool:
        """Whether the file moved."""
        return bool(self.old_path and self.new_path and self.old_path != self.new_path)


def _unquote(raw: bytes) -> str:
    """Undo git's C-style quoting of a path (`"a\\tb"`), bytes decoded as UTF-8."""
    text = raw.decode("utf-8", "surrogateescape")
    if not (text.startswith('"') and text.endswith('"')):
        return text
    body, out, i = text[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        out += ch.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _side(raw: bytes, prefix: str) -> str | None:
    # git ends a ---/+++ path that holds a space with a tab, to mark where it ends.
    path = _unquote(raw[:-1] if raw.endswith(b"\t") else raw)
    if path == "/dev/null":
        return None
    return path[len(prefix) :] if path.startswith(prefix) else path


def diff_changes(repo_dir: Path, parent: str, sha: str) -> list[FileChange]:
    """The files changed between `parent` and `sha` with their touched line numbers
    (renames detected; binary files have no lines)."""
    out = git_bytes(
        "diff",
        "-U0",
        "-M",
        "--no-color",
        "--no-ext-diff",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        parent,
        sha,
        cwd=repo_dir,
    )
    changes: list[FileChange] = []
    section: dict[str, object] | None = None

    def flush() -> None:
        if section is None:
            return
        old = section["minus"] if "minus" in section else section.get("from", section["a"])
        new = section["plus"] if "plus" in section else section.get("to", section["b"])
        if section.get("new"):
            old = None
        if section.get("deleted"):
            new = None
        # The section holds paths as str or None and line numbers as lists of ints.
        old_lines = cast(list[int], section["old_lines"])
        new_lines = cast(list[int], section["new_lines"])
        changes.append(
            FileChange(
                cast(str | None, old), cast(str | None, new), tuple(old_lines), tuple(new_lines)
            )
        )

    for line in out.split(b"\n"):
        if line.startswith(b"diff --git "):
            flush()
            header = line[len(b"diff --git ") :]
            a, sep, b = header.partition(b" b/")
            section = {
                "a": _side(a, "a/") if sep else None,
                "b": b.decode("utf-8", "surrogateescape") if sep else None,
                "old_lines": [],
                "new_lines": [],
            }
        elif section is None:
            continue
        elif line.startswith(b"@@"):
            section["in_hunks"] = True
            match = _HUNK.match(line)
            if match is None:
                continue
            a_start, a_len = int(match.group(1)), int(match.group(2) or b"1")
            b_start, b_len = int(match.group(3)), int(match.group(4) or b"1")
            cast(list[int], section["old_lines"]).extend(range(a_start, a_start + a_len))
            cast(list[int], section["new_lines"]).extend(range(b_start, b_start + b_len))
        elif section.get("in_hunks"):
            continue  # a removed "-- x" line looks like a header: never read it as one
        elif line.startswith(b"new file mode"):
            section["new"] = True
        elif line.startswith(b"deleted file mode"):
            section["deleted"] = True
        elif line.startswith(b"rename from "):
            section["from"] = _unquote(line[len(b"rename from ") :])
        elif line.startswith(b"rename to "):
            section["to"] = _unquote(line[len(b"rename to ") :])
        elif line.startswith(b"--- "):
            section["minus"] = _side(line[4:], "a/")
        elif line.startswith(b"+++ "):
            section["plus"] = _side(line[4:], "b/")
    flush()
    return changes


def innermost(symbols: tuple[Symbol, ...], line: int) -> Symbol | None:
    """The smallest definition whose span contains `line`."""
    best: Symbol | None = None
    for sym in symbols:
        if sym.start_line <= line <= sym.end_line and (
            best is None or sym.end_line - sym.start_line < best.end_line - best.start_line
        ):
            best = sym
    return best


@dataclass(frozen=True)
class GoldSymbol:
    """A definition the commit touched, named by the file's new path."""

    path: str
    qualname: str
    change: str  # added, deleted, modified


def touched_symbols(
    change: FileChange, old_symbols: tuple[Symbol, ...], new_symbols: tuple[Symbol, ...]
) -> list[GoldSymbol]:
    """The definitions `change` touches, classified as added, deleted or modified."""
    old_names = {s.qualname for s in old_symbols}
    new_names = {s.qualname for s in new_symbols}
    hit: dict[str, None] = {}
    for line in change.old_lines:
        sym = innermost(old_symbols, line)
        if sym is not None:
            hit[sym.qualname] = None
    for line in change.new_lines:
        sym = innermost(new_symbols, line)
        if sym is not None:
            hit[sym.qualname] = None
    out = []
    for name in hit:
        if name in old_names and name in new_names:
            kind = "modified"
        elif name in new_names:
            kind = "added"
        else:
            kind = "deleted"
        out.append(GoldSymbol(change.path, name, kind))
    return out
