"""Parse Python source with tree-sitter into definitions and imports.

tree-sitter recovers from syntax errors, so a file that does not fully parse still
yields every definition that does; the error lines are reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import tree_sitter_python
from tree_sitter import Language, Node, Parser


@dataclass(frozen=True)
class Symbol:
    """A class, function or method: qualified name, 1-based inclusive line span."""

    kind: str
    name: str
    qualname: str
    start_line: int
    end_line: int
    signature: str
    docstring: str | None


@dataclass(frozen=True)
class Import:
    """One imported name. `module` is as written (without leading dots); `level` counts
    the dots of a relative import; `name` is None for `import module`."""

    module: str
    name: str | None
    alias: str | None
    level: int
    line: int


@dataclass(frozen=True)
class ParsedFile:
    """What a file defines and imports, and where it failed to parse (if anywhere)."""

    symbols: tuple[Symbol, ...]
    imports: tuple[Import, ...]
    parse_error: str | None
    line_count: int


def describe_errors(lines: tuple[int, ...]) -> str | None:
    """A short description of syntax errors at `lines`, or None when there are none."""
    if not lines:
        return None
    shown = ", ".join(str(n) for n in lines[:10])
    more = "" if len(lines) <= 10 else f" (+{len(lines) - 10} more)"
    return f"syntax errors at lines {shown}{more}"


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_python.language()))


def _text(node: Node | None) -> str:
    return "" if node is None or node.text is None else node.text.decode("utf-8", "replace")


def _docstring(body: Node | None) -> str | None:
    if body is None:
        return None
    for child in body.named_children:
        if child.type == "comment":
            continue
        if child.type == "expression_statement" and child.named_children:
            first = child.named_children[0]
            if first.type == "string":
                parts = [_text(c) for c in first.named_children if c.type == "string_content"]
                return "".join(parts).strip() or None
        return None
    return None


def _signature(node: Node) -> str:
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    header = node.text[: end - node.start_byte] if node.text is not None else b""
    text = " ".join(header.decode("utf-8", "replace").split())
    return text.rstrip(":").rstrip()


def _error_lines(root: Node) -> tuple[int, ...]:
    lines: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if not node.has_error:
            continue
        if node.type == "ERROR" or node.is_missing:
            lines.add(node.start_point.row + 1)
            continue
        stack.extend(node.children)
    return tuple(sorted(lines))


def _imports(node: Node) -> list[Import]:
    line = node.start_point.row + 1
    out: list[Import] = []
    if node.type == "import_statement":
        for child in node.named_children:
            if child.type == "dotted_name":
                out.append(Import(_text(child), None, None, 0, line))
            elif child.type == "aliased_import":
                name = child.child_by_field_name("name")
                alias = child.child_by_field_name("alias")
                out.append(Import(_text(name), None, _text(alias) or None, 0, line))
        return out
    module_node = node.child_by_field_name("module_name")
    level = 0
    module = _text(module_node)
    if module_node is not None and module_node.type == "relative_import":
        prefix = next((c for c in module_node.children if c.type == "import_prefix"), None)
        level = len(_text(prefix))
        dotted = next((c for c in module_node.named_children if c.type == "dotted_name"), None)
        module = _text(dotted)
    module_span = None if module_node is None else (module_node.start_byte, module_node.end_byte)
    for child in node.named_children:
        if (child.start_byte, child.end_byte) == module_span:
            continue
        if child.type == "dotted_name":
            out.append(Import(module, _text(child), None, level, line))
        elif child.type == "aliased_import":
            name = child.child_by_field_name("name")
            alias = child.child_by_field_name("alias")
            out.append(Import(module, _text(name), _text(alias) or None, level, line))
        elif child.type == "wildcard_import":
            out.append(Import(module, "*", None, level, line))
    return out


def parse_python(source: bytes) -> ParsedFile:
    """Parse `source` and return its definitions (outermost first) and imports."""
    tree = _parser().parse(source)
    root = tree.root_node
    symbols: list[Symbol] = []
    imports: list[Import] = []
    # (node, enclosing qualname, enclosing kind, span start row for decorators)
    stack: list[tuple[Node, str, str | None]] = [(root, "", None)]
    while stack:
        node, prefix, parent_kind = stack.pop()
        children = list(node.named_children)
        for child in reversed(children):
            target = child
            start = child.start_point.row
            if child.type == "decorated_definition":
                inner = child.child_by_field_name("definition")
                if inner is None:
                    continue
                target = inner
            if target.type in ("class_definition", "function_definition"):
                name = _text(target.child_by_field_name("name"))
                if not name:
                    continue
                if target.type == "class_definition":
                    kind = "class"
                else:
                    kind = "method" if parent_kind == "class" else "function"
                qualname = f"{prefix}.{name}" if prefix else name
                body = target.child_by_field_name("body")
                symbols.append(
                    Symbol(
                        kind=kind,
                        name=name,
                        qualname=qualname,
                        start_line=start + 1,
                        end_line=target.end_point.row + 1,
                        signature=_signature(target),
                        docstring=_docstring(body),
                    )
                )
                if body is not None:
                    stack.append((body, qualname, kind))
            elif child.type in ("import_statement", "import_from_statement"):
                imports.extend(_imports(child))
            elif child.type not in ("string", "comment", "expression_statement"):
                # Definitions and imports nested in if/try/with blocks still count.
                stack.append((child, prefix, parent_kind))
    symbols.sort(key=lambda s: (s.start_line, -s.end_line))
    imports.sort(key=lambda i: i.line)
    line_count = source.count(b"\n") + (0 if source.endswith(b"\n") or not source else 1)
    return ParsedFile(
        tuple(symbols), tuple(imports), describe_errors(_error_lines(root)), line_count
    )
