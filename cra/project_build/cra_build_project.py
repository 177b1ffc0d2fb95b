"""Build a project's wheel from its tree: run inside the sandbox by an environment's
interpreter, never on the host. It imports nothing of cra (cra is not visible there).

usage: python cra_build_project.py TREE SITE MODE [PYTHONPATH_ENTRY ...]

The project's PEP 517 backend, installed in the environment as a wheel, builds a wheel
of TREE with no isolation and no network. In `wheel` mode (a dependency's sdist, at pack
time) the wheel is left in SITE; otherwise it is unpacked into SITE. In editable mode,
each file the build made that the tree lacks (a compiled extension, a generated version
file) is copied next to the tree's own sources, so the tree's code imports it.
"""

from __future__ import annotations  # annotations stay text on the oldest interpreters

import importlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from types import ModuleType

LEGACY = "setuptools.build_meta:__legacy__"


def _toml_reader() -> ModuleType | None:
    """tomllib, or tomli on an interpreter older than 3.11 that has it, else None."""
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def build_system(tree):
    """The `[build-system]` table of TREE's pyproject.toml (empty when there is none)."""
    path = os.path.join(tree, "pyproject.toml")
    if not os.path.isfile(path):
        return {}
    toml = _toml_reader()
    with open(path, "rb") as fh:
        raw = fh.read()
    if toml is not None:
        return toml.loads(raw.decode("utf-8")).get("build-system", {})
    found = re.search(rb"""^build-backend\s*=\s*["']([^"']+)["']""", raw, re.M)
    return {"build-backend": found.group(1).decode()} if found else {}


def load_backend(tree):
    """The backend object TREE names (setuptools' legacy backend by default)."""
    table = build_system(tree)
    for entry in table.get("backend-path", []):
        sys.path.insert(0, os.path.join(tree, entry))
    module, _, attrs = table.get("build-backend", LEGACY).partition(":")
    backend = importlib.import_module(module)
    for attr in filter(None, attrs.split(".")):
        backend = getattr(backend, attr)
    return backend


def overlay(site, tree, entries):
    """Copy into TREE the files of SITE that its PYTHONPATH entries lack."""
    copied = 0
    for root, dirs, files in os.walk(site):
        rel_root = os.path.relpath(root, site)
        dirs[:] = [d for d in dirs if not d.endswith((".dist-info", ".data"))]
        for name in files:
            rel = os.path.normpath(os.path.join(rel_root, name))
            for entry in entries:
                dest = os.path.join(tree, entry, rel)
                if os.path.isdir(os.path.dirname(dest)):
                    if not os.path.lexists(dest):
                        shutil.copy2(os.path.join(root, name), dest)
                        copied += 1
                    break
    return copied


def main(argv):
    tree, site, mode = argv[1:4]
    entries = argv[4:]
    os.chdir(tree)
    sys.path.insert(0, tree)
    if mode == "wheel":
        name = load_backend(tree).build_wheel(site)
        print(f"cra-build-project: built {name}")
        return 0
    out = tempfile.mkdtemp(prefix="cra-wheel-")
    name = load_backend(tree).build_wheel(out)
    with zipfile.ZipFile(os.path.join(out, name)) as wheel:
        wheel.extractall(site)
    copied = overlay(site, tree, entries) if mode == "editable" else 0
    print(f"cra-build-project: built {name}, {copied} files into the tree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
