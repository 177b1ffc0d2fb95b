"""Test-file detection by component and name, not substring; modules versus support."""

from __future__ import annotations

import pytest

from cra.harness.testpaths import is_test_module, is_test_path

# Test modules, test support and files under a test directory.
TEST_PATHS = [
    "tests/test_a.py",
    "tests/util.py",
    "pkg/test_io.py",
    "pkg/io_test.py",
    "conftest.py",
    "src/pkg/testing/helpers.py",
    "Tests/x.py",
    "tests/data/input.json",
]

# Test paths that are not test modules: conftest, helpers, data under tests/.
TEST_SUPPORT = [
    "conftest.py",
    "tests/conftest.py",
    "tests/util.py",
    "tests/__init__.py",
    "tests/data/test_input.json",
    "src/pkg/testing/helpers.py",
]


@pytest.mark.parametrize("path", TEST_PATHS)
def test_tests(path: str) -> None:
    """Test modules, test support and anything under a test directory are test paths."""
    assert is_test_path(path)


@pytest.mark.parametrize(
    "path", ["latest.py", "src/contest/run.py", "src/pytest_plugin.py", "attest.py", "README.md"]
)
def test_not_tests(path: str) -> None:
    """A path whose name merely contains "test" is not a test path."""
    assert not is_test_path(path)
    assert not is_test_module(path)


@pytest.mark.parametrize(
    "path", ["tests/test_a.py", "pkg/test_io.py", "pkg/io_test.py", "src/pkg/tests/test_x.py"]
)
def test_test_modules(path: str) -> None:
    """Files pytest collects by default (test_*.py, *_test.py) are test modules."""
    assert is_test_module(path)
    assert is_test_path(path)


@pytest.mark.parametrize("path", TEST_SUPPORT)
def test_test_support_is_a_test_path_but_not_a_test_module(path: str) -> None:
    """conftest.py, helpers and data under tests/ belong to the tests but are not modules."""
    assert is_test_path(path)
    assert not is_test_module(path)


def test_validation_runs_exactly_the_test_modules() -> None:
    """Validation's choice of tests to run is the same predicate mining qualifies with."""
    from cra.harness.trees import runnable_tests

    paths = ["tests/conftest.py", "tests/util.py", "tests/test_a.py", "pkg/io_test.py"]
    assert runnable_tests(paths) == [p for p in paths if is_test_module(p)]
    assert runnable_tests(paths) == ["tests/test_a.py", "pkg/io_test.py"]


def test_support_and_data_files_run_their_test_directory_s_modules() -> None:
    """A changed data file under tests/ is exercised by the test modules directly in
    tests/; changed test modules are run themselves; a root conftest.py exercises none."""
    from cra.harness.testpaths import exercised_modules, exercises_tests

    tree = ["tests/test_format.py", "tests/data/test_skip.py", "tests/util.py", "src/a.py"]
    assert exercised_modules(["tests/data/cases/x.py"], tree) == ["tests/test_format.py"]
    assert exercised_modules(["tests/test_b.py", "tests/util.py"], tree) == ["tests/test_b.py"]
    assert exercised_modules(["conftest.py"], tree) == []
    assert exercises_tests(["tests/conftest.py"]) and not exercises_tests(["conftest.py"])
