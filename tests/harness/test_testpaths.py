"""Test-file detection by component and name, not substring."""

from __future__ import annotations

import pytest

from cra.harness.testpaths import is_test_path


@pytest.mark.parametrize(
    "path",
    ["tests/test_a.py", "tests/util.py", "pkg/test_io.py", "pkg/io_test.py", "conftest.py",
     "src/pkg/testing/helpers.py", "Tests/x.py"],
)  # fmt: skip
def test_tests(path: str) -> None:
    assert is_test_path(path)


@pytest.mark.parametrize(
    "path", ["latest.py", "src/contest/run.py", "src/pytest_plugin.py", "attest.py", "README.md"]
)
def test_not_tests(path: str) -> None:
    assert not is_test_path(path)
