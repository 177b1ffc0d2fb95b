"""Which paths are tests: decided by path component and file name, never by substring.

A path is a test when a directory component is `test`, `tests` or `testing`, or its
file name is `conftest.py`, `test_*.py` or `*_test.py`. So `tests/util.py` and
`pkg/test_io.py` are tests, while `latest.py` and `src/contest/run.py` are not.
"""

from __future__ import annotations

from pathlib import PurePosixPath

TEST_DIRS = frozenset({"test", "tests", "testing"})


def is_test_path(path: str) -> bool:
    """Whether `path` (repository-relative, posix) is a test file or lives in a test dir."""
    parts = PurePosixPath(path).parts
    if not parts:
        return False
    name = parts[-1]
    if name == "conftest.py" or (name.endswith(".py") and (
        name.startswith("test_") or name.endswith("_test.py")
    )):  # fmt: skip
        return True
    return any(part.lower() in TEST_DIRS for part in parts[:-1])
