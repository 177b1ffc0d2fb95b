"""Which paths are tests: decided by path component and file name, never by substring.

Two predicates, one rule for mining and validation alike:

- :func:`is_test_module` is a file pytest collects by default: a `.py` file named
  `test_*.py` or `*_test.py`, wherever it lives. A commit qualifies as "changes tests"
  only when it adds or modifies one, and validation runs exactly those.
- :func:`is_test_path` is anything that belongs to the tests: a test module, test
  support (`conftest.py`), or any file under a directory component `test`, `tests` or
  `testing`. It decides what is held out of the gold patch and what does not count as
  source.

So `tests/test_a.py` and `pkg/test_io.py` are test modules; `tests/util.py` and
`conftest.py` are test paths but not modules; `latest.py` and `src/contest/run.py` are
neither.
"""

from __future__ import annotations

from pathlib import PurePosixPath

TEST_DIRS = frozenset({"test", "tests", "testing"})
TEST_SUPPORT_NAMES = frozenset({"conftest.py"})


def is_test_module(path: str) -> bool:
    """Whether `path` (repository-relative, posix) is a module pytest collects by default:
    `test_*.py` or `*_test.py`."""
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def is_test_path(path: str) -> bool:
    """Whether `path` (repository-relative, posix) belongs to the tests: a test module,
    test support such as `conftest.py`, or a file in a test directory."""
    parts = PurePosixPath(path).parts
    if not parts:
        return False
    if is_test_module(path) or parts[-1] in TEST_SUPPORT_NAMES:
        return True
    return any(part.lower() in TEST_DIRS for part in parts[:-1])
