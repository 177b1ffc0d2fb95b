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


def test_dir_of(path: str) -> str | None:
    """The nearest directory above `path` named `test`, `tests` or `testing` (None when
    it lies in none): where the test modules exercising a support or data file live."""
    parts = PurePosixPath(path).parts[:-1]
    for i in range(len(parts), 0, -1):
        if parts[i - 1].lower() in TEST_DIRS:
            return "/".join(parts[:i])
    return None


def exercises_tests(changed: list[str]) -> bool:
    """Whether changed test paths give validation something to run: a test module, or a
    support or data file inside a test directory (run through that directory's modules)."""
    return any(is_test_module(p) or test_dir_of(p) is not None for p in changed)


def exercised_modules(changed: list[str], tree: list[str]) -> list[str]:
    """The test modules a commit's changed test paths exercise, given the paths of its
    tree: the changed test modules themselves; failing those, the test modules directly in
    the test directory of each changed support or data file."""
    modules = sorted(p for p in changed if is_test_module(p))
    if modules:
        return modules
    dirs = {d for d in (test_dir_of(p) for p in changed) if d is not None}
    return sorted(p for p in tree if is_test_module(p) and str(PurePosixPath(p).parent) in dirs)
