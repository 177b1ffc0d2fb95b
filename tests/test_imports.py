"""The import graph of cra/: arrows point one way, at module and function level alike."""

from __future__ import annotations

import ast
from pathlib import Path

import cra

ROOT = Path(cra.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def _graph() -> dict[str, set[str]]:
    """Every cra module and the cra modules it imports anywhere in its body."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _imported(node):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path of imports that leads from `start` back to it, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_of_cra_imports_itself_back_through_others() -> None:
    """No import cycle among cra's modules, counting imports inside functions."""
    graph = _graph()
    cycles = [c for name in sorted(graph) if (c := _cycle_from(graph, name)) is not None]
    assert cycles == [], " -> ".join(cycles[0]) if cycles else ""


def test_leaf_modules_import_only_other_leaves() -> None:
    """The ground floor (errors, files, git, tools, sandbox, text, lock, config) imports
    nothing above it."""
    leaves = {f"cra.{n}" for n in ("errors", "fsutil", "git", "tools", "sandbox", "text", "lock")}
    leaves |= {f"cra.sandbox_{n}" for n in ("argv", "cgroups", "limits", "procs", "watch")}
    leaves |= {"cra.config", "cra.settings_table"}
    graph = _graph()
    above = {leaf: sorted(graph[leaf] - leaves) for leaf in sorted(leaves)}
    assert {leaf: deps for leaf, deps in above.items() if deps} == {}
