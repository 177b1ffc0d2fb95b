"""What the ranker reads of a file: its path, module docstring and top-level definitions
(names and signatures), all from the snapshot the task starts from."""

from __future__ import annotations

import re

from cra.harness.pyparse import ParsedFile

_DOC = re.compile(rb'\A(?:\s*(?:#[^\n]*)?\n)*\s*[rRuU]?("""|\'\'\')(.*?)\1', re.DOTALL)
MAX_DOC_CHARS = 300
MAX_DEFINITIONS = 40


def module_docstring(data: bytes) -> str | None:
    """The leading triple-quoted docstring of a module's source, if it has one (a light
    scan of the head; comments and blank lines before it are allowed)."""
    found = _DOC.match(data[:8192])
    if found is None:
        return None
    text = " ".join(found.group(2).decode("utf-8", "replace").split())
    return text or None


def file_text(path: str, parsed: ParsedFile | None, docstring: str | None) -> str:
    """The one text the encoder embeds for a file: path words, the module docstring
    (cut), then each top-level definition's signature (methods left out)."""
    words = path.removesuffix(".py").replace("/", " ").replace("_", " ")
    parts = [f"{path} ({words})"]
    if docstring:
        parts.append(docstring[:MAX_DOC_CHARS])
    if parsed is not None:
        top = [s for s in parsed.symbols if "." not in s.qualname][:MAX_DEFINITIONS]
        parts.extend(s.signature or f"{s.kind} {s.name}" for s in top)
    return "\n".join(parts)
