"""The import graph of a snapshot: which Python file depends on which."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cra.harness.pyparse import Import

SOURCE_ROOTS = ("src", "lib", "python")


def module_names(path: str) -> list[str]:
    """Dotted module names a file can be imported as (`src/a/b.py` → `src.a.b`, `a.b`)."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts:
        return []
    names = [".".join(parts)]
    if len(parts) > 1 and parts[0] in SOURCE_ROOTS:
        names.append(".".join(parts[1:]))
    return names


def module_map(paths: Iterable[str]) -> dict[str, str]:
    """Map each importable dotted name to its file (first file wins on a clash)."""
    mapping: dict[str, str] = {}
    for path in sorted(paths):
        for name in module_names(path):
            mapping.setdefault(name, path)
    return mapping


def _package_of(path: str) -> list[str]:
    parts = path.removesuffix(".py").split("/")
    return parts[:-1]


def resolve_import(path: str, imp: Import, modules: Mapping[str, str]) -> str | None:
    """The repository file `imp` (found in `path`) refers to, if any."""
    if imp.level:
        package = _package_of(path)
        if imp.level - 1 > len(package):
            return None
        base = package[: len(package) - (imp.level - 1)]
        candidates = []
        stem = ".".join([*base, *([imp.module] if imp.module else [])])
        if imp.name and imp.name != "*":
            candidates.append(f"{stem}.{imp.name}" if stem else imp.name)
        candidates.append(stem)
        for candidate in candidates:
            for name in (candidate, *([candidate.split(".", 1)[1]] if "." in candidate else [])):
                if name in modules:
                    return modules[name]
        return None
    candidates = []
    if imp.name and imp.name != "*":
        candidates.append(f"{imp.module}.{imp.name}")
    candidates.append(imp.module)
    for candidate in candidates:
        if candidate in modules:
            return modules[candidate]
    return None


def import_graph(imports: Mapping[str, Iterable[Import]]) -> dict[str, set[str]]:
    """For each file, the repository files it imports directly (itself excluded)."""
    modules = module_map(imports.keys())
    graph: dict[str, set[str]] = {}
    for path, file_imports in imports.items():
        targets = {resolve_import(path, imp, modules) for imp in file_imports}
        graph[path] = {t for t in targets if t is not None and t != path}
    return graph


def closure(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Transitive dependencies of each file."""
    result: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        stack = list(graph.get(start, ()))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(graph.get(node, ()))
        seen.discard(start)
        result[start] = seen
    return result


def dependency_order(paths: Iterable[str], deps: Mapping[str, set[str]]) -> list[str]:
    """`paths` ordered dependency-first (a stable topological order; cycles keep input
    order)."""
    items = list(dict.fromkeys(paths))
    position = {p: i for i, p in enumerate(items)}
    placed: list[str] = []
    remaining = list(items)
    while remaining:
        for candidate in remaining:
            blockers = [d for d in deps.get(candidate, ()) if d in position and d in remaining]
            if not blockers or all(candidate in deps.get(b, ()) for b in blockers):
                placed.append(candidate)
                remaining.remove(candidate)
                break
        else:  # pragma: no cover - the cycle rule above always places one
            placed.extend(remaining)
            break
    return placed
