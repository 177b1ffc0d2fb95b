"""The import graph and the deterministic baseline planner."""

from __future__ import annotations

from cra.harness.deps import closure, dependency_order, import_graph, module_names
from cra.harness.planners import baseline_plan
from cra.harness.pyparse import Import
from cra.harness.retrieve import Hit


def imp(module: str, name: str | None = None, level: int = 0) -> Import:
    return Import(module, name, None, level, 1)


IMPORTS = {
    "src/app/__init__.py": [],
    "src/app/util.py": [imp("os")],
    "src/app/models.py": [imp("util", "clamp", level=1)],
    "src/app/api.py": [imp("app.models", "Model"), imp("app", "util")],
    "tests/test_api.py": [imp("app.api", "Api")],
}


def test_module_names_strip_source_roots() -> None:
    """A file's module names are its dotted path with and without the src/ root."""
    assert module_names("src/app/util.py") == ["src.app.util", "app.util"]
    assert module_names("src/app/__init__.py") == ["src.app", "app"]


def test_import_graph_resolves_absolute_relative_and_submodule_imports() -> None:
    """Absolute, relative and submodule imports resolve to files, and close transitively."""
    graph = import_graph(IMPORTS)
    assert graph["src/app/models.py"] == {"src/app/util.py"}
    assert graph["src/app/api.py"] == {"src/app/models.py", "src/app/util.py"}
    assert graph["src/app/util.py"] == set()
    deps = closure(graph)
    assert deps["tests/test_api.py"] == {
        "src/app/api.py",
        "src/app/models.py",
        "src/app/util.py",
    }


def test_dependency_order_puts_dependencies_first() -> None:
    """Files are ordered so that each comes after the files it imports."""
    deps = closure(import_graph(IMPORTS))
    order = dependency_order(["src/app/api.py", "src/app/util.py", "src/app/models.py"], deps)
    assert order == ["src/app/util.py", "src/app/models.py", "src/app/api.py"]


def test_baseline_plan_is_deterministic_and_dependency_ordered() -> None:
    """The baseline plan takes the top-hit files in dependency order, the same every time."""
    deps = closure(import_graph(IMPORTS))
    hits = [
        Hit("src/app/api.py", "Api.get", "method", 3.0),
        Hit("src/app/util.py", "clamp", "function", 2.0),
        Hit("src/app/api.py", "Api.put", "method", 1.5),
        Hit("src/app/models.py", "Model", "class", 1.0),
    ]
    task, tests = "Clamp values in the API", ["tests/test_api.py"]
    plan = baseline_plan(task, hits, deps, tests, max_files=2, max_symbols=3)
    assert [s.file for s in plan.steps] == ["src/app/util.py", "src/app/api.py"]
    assert plan.steps[1].symbols == ("Api.get", "Api.put")
    assert plan.steps[1].depends_on == (1,)
    assert [t.file for t in plan.tests] == ["tests/test_api.py"]
    again = baseline_plan(task, hits, deps, tests, max_files=2, max_symbols=3)
    assert again.to_json() == plan.to_json()
