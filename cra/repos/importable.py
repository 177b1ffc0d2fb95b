"""How a packed project becomes importable for its tests: PYTHONPATH entries or an
install, the environment a VCS-versioned build needs, and the command that runs the tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cra.errors import UsageError
from cra.repos.requirements import GitTree, RequirementSet

VCS_BACKENDS = (
    "setuptools-scm",
    "setuptools_scm",
    "hatch-vcs",
    "versioningit",
    "poetry-dynamic-versioning",
    "dunamai",
    "pdm-backend",
)
COMPILED_BACKENDS = ("maturin", "scikit-build-core", "meson-python", "setuptools-rust", "cython")


@dataclass(frozen=True)
class Layout:
    """How a project becomes importable for its tests, and how they are run."""

    mode: str
    pythonpath: tuple[str, ...]
    env: dict[str, str]
    test_command: str | None
    reasons: tuple[str, ...]


def _pytest_configured(tree: GitTree, pyproject: dict[str, Any]) -> bool:
    tool = pyproject.get("tool", {})
    if "pytest" in tool:
        return True
    if tree.exists("pytest.ini") or tree.exists("conftest.py"):
        return True
    for path, section in (("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]")):
        text = tree.read(path)
        if text and section in text:
            return True
    return False


def _has_tests(tree: GitTree) -> bool:
    pattern = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
    return any(
        pattern.search(p) and (p.split("/")[0] in ("tests", "test", "testing") or "/" not in p)
        for p in tree.paths
    ) or any(pattern.search(p) for p in tree.paths)


def detect_layout(
    tree: GitTree, reqs: RequirementSet, *, mode: str = "auto", version: str = "0.0.0"
) -> Layout:
    """Decide how the project at `tree` is made importable and which command runs its tests.

    `mode` "auto" prefers PYTHONPATH entries (no build per commit) when the layout allows,
    and falls back to an editable install for compiled extensions or a version file that
    only a build writes.
    """
    reasons: list[str] = []
    pyproject = reqs.pyproject
    tool = pyproject.get("tool", {})
    backend_reqs = " ".join(reqs.build_requires).lower().replace("_", "-")
    env: dict[str, str] = {}
    vcs = any(b.replace("_", "-") in backend_reqs for b in VCS_BACKENDS[:5]) or (
        "setuptools_scm" in tool or tool.get("hatch", {}).get("version", {}).get("source") == "vcs"
    )
    if vcs:
        env["SETUPTOOLS_SCM_PRETEND_VERSION"] = version
        reasons.append("version comes from git: SETUPTOOLS_SCM_PRETEND_VERSION set")
    scm = tool.get("setuptools_scm", {})
    version_file = bool(scm.get("write_to") or scm.get("version_file")) or bool(
        tool.get("hatch", {}).get("build", {}).get("hooks", {}).get("vcs")
    )
    compiled = any(b in backend_reqs for b in COMPILED_BACKENDS)
    setup_py = tree.read("setup.py") or ""
    if "ext_modules" in setup_py or "Extension(" in setup_py:
        compiled = True
    pythonpath: list[str] = []
    src_packages = [p for p in tree.paths if re.match(r"^src/[^/]+(/__init__\.py|\.py)$", p)]
    if src_packages:
        pythonpath.append("src")
    elif any(
        re.match(r"^[^/]+/__init__\.py$", p) and p.split("/")[0] not in ("tests", "test", "docs")
        for p in tree.paths
    ):
        pythonpath.append(".")
    for entry in tool.get("pytest", {}).get("ini_options", {}).get("pythonpath", []):
        entry = str(entry).strip("/") or "."
        if entry not in pythonpath and not entry.startswith("..") and not entry.startswith("/"):
            pythonpath.append(entry)
    if mode == "auto":
        if compiled:
            mode = "editable"
            reasons.append("compiled extensions need a build: editable install")
        elif version_file:
            mode = "editable"
            reasons.append("the version file is written by a build: editable install")
        elif pythonpath:
            mode = "pythonpath"
            reasons.append(f"importable from PYTHONPATH {', '.join(pythonpath)}")
        else:
            mode = "editable"
            reasons.append("no package directory found: editable install")
    elif mode not in ("pythonpath", "editable", "installed"):
        raise UsageError(
            f"unknown install mode {mode!r}", hint="use auto, pythonpath, editable or installed"
        )
    if mode == "pythonpath" and not pythonpath:
        raise UsageError(
            "no package directory to put on PYTHONPATH",
            hint="use --install-mode editable",
        )
    command = (
        "python -m pytest" if _pytest_configured(tree, pyproject) or _has_tests(tree) else None
    )
    return Layout(mode, tuple(pythonpath), env, command, tuple(reasons))
