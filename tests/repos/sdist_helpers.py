"""Helpers for the sdist tests: legacy `setup.py` sdists that show where they ran."""

from __future__ import annotations

from pathlib import Path

from cra.fixtures.wheelhouse import write_sdist

SETUP_PY = """\
import os
from setuptools import setup

MARKER = {marker!r}
try:
    with open(MARKER, "w") as fh:
        fh.write("setup.py ran here")
except OSError:
    pass
if {fail!r}:
    raise SystemExit("error: this sdist refuses to build")
with open("{module}.py", "w") as fh:
    fh.write("SAW_HOST = %r\\n" % os.path.isdir(os.path.dirname(MARKER)))
setup(name={name!r}, version={version!r}, py_modules=[{module!r}])
"""


def make_legacy_sdist(
    dest: Path, name: str, version: str, *, marker: Path, fail: bool = False
) -> Path:
    """An sdist `name-version.tar.gz` with only a `setup.py`, which writes `marker` when
    it can, and generates a module saying whether it saw the marker's folder."""
    module = name.replace("-", "_")
    top = f"{module}-{version}"
    text = SETUP_PY.format(marker=str(marker), fail=fail, module=module, name=name, version=version)
    files = {
        "setup.py": text,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    return write_sdist(dest, top, files)
