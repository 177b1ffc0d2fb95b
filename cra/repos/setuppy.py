"""Requirements a `setup.py` declares, read without running it.

A `setup.py` is code, and repository code never runs on the host. Most declare their
requirements as literals, directly in `setup(...)` or through module-level names
(`INSTALL_REQUIRES = [...]`, `EXTRAS_REQUIRE = {...}`, `EXTRAS["dev"] = EXTRAS["tests"] +
[...]`). This module evaluates exactly those forms (literals, names bound to them, `+` of
lists, subscripts with constant keys) over the module's top-level statements and the
arguments of the `setup()` call; anything else is left out, never guessed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

_UNKNOWN = object()


@dataclass(frozen=True)
class SetupRequirements:
    """What `setup()` is given: install, test and extra requirements."""

    install: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _value(node: ast.expr, names: dict[str, Any]) -> Any:
    """The value of `node` when it is built from literals and known names only."""
    if isinstance(node, ast.Name):
        return names.get(node.id, _UNKNOWN)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _value(node.left, names), _value(node.right, names)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        return _UNKNOWN
    if isinstance(node, ast.Subscript):
        base, key = _value(node.value, names), _value(node.slice, names)
        if isinstance(base, dict) and isinstance(key, str):
            return base.get(key, _UNKNOWN)
        return _UNKNOWN
    if isinstance(node, ast.List | ast.Tuple):
        items = [_value(e, names) for e in node.elts]
        return _UNKNOWN if any(i is _UNKNOWN for i in items) else list(items)
    if isinstance(node, ast.Dict):
        keys = [_value(k, names) if k is not None else _UNKNOWN for k in node.keys]
        values = [_value(v, names) for v in node.values]
        if any(x is _UNKNOWN for x in (*keys, *values)):
            return _UNKNOWN
        return dict(zip(keys, values, strict=True))
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float):
        return node.value
    return _UNKNOWN


def _bind(stmt: ast.stmt, names: dict[str, Any]) -> None:
    if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
        return
    target, value = stmt.targets[0], _value(stmt.value, names)
    if isinstance(target, ast.Name):
        names[target.id] = value
    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        base, key = names.get(target.value.id), _value(target.slice, names)
        if isinstance(base, dict) and isinstance(key, str) and value is not _UNKNOWN:
            base[key] = value


def _setup_call(module: ast.Module) -> ast.Call | None:
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "setup":
                return node
    return None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list):
        return ()
    return tuple(v.strip() for v in value if isinstance(v, str) and v.strip())


def read_setup_py(text: str) -> SetupRequirements:
    """The requirements a `setup.py`'s source declares (empty when it cannot tell)."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return SetupRequirements()
    names: dict[str, Any] = {}
    for stmt in module.body:
        _bind(stmt, names)
    call = _setup_call(module)
    if call is None:
        return SetupRequirements()
    given = {kw.arg: _value(kw.value, names) for kw in call.keywords if kw.arg}
    extras = given.get("extras_require")
    return SetupRequirements(
        install=_strings(given.get("install_requires")),
        tests=_strings(given.get("tests_require")),
        extras={str(k): _strings(v) for k, v in extras.items()} if isinstance(extras, dict) else {},
    )
