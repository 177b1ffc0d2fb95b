"""Configuration forms pytest no longer reads still configure the era's tests."""

from __future__ import annotations

import configparser
from pathlib import Path

from cra.harness.runner import legacy_config


def test_a_pytest_section_in_setup_cfg_is_given_with_c(tmp_path: Path) -> None:
    """`[pytest]` in setup.cfg (pytest < 4) becomes an ini file passed with -c, its
    options intact, the tree staying the rootdir."""
    work, where = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    where.mkdir()
    (work / "setup.cfg").write_text("[pytest]\naddopts = -ra\ntestpaths = tests\n")
    args = legacy_config(work, where)
    assert args == ["-c", str(where / "cra-legacy-pytest.ini"), f"--rootdir={work}"]
    ini = configparser.ConfigParser()
    ini.read(where / "cra-legacy-pytest.ini")
    assert dict(ini["pytest"]) == {"addopts": "-ra", "testpaths": "tests"}


def test_current_configuration_forms_need_nothing(tmp_path: Path) -> None:
    """`[tool:pytest]`, a pytest.ini, or no configuration at all add no option."""
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\naddopts = -ra\n")
    assert legacy_config(tmp_path, tmp_path) == []
    (tmp_path / "setup.cfg").write_text("[pytest]\naddopts = -ra\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert legacy_config(tmp_path, tmp_path) == []
    assert legacy_config(tmp_path / "missing", tmp_path) == []


def test_every_test_failing_before_and_after_is_an_environment_problem() -> None:
    """Three or more tests, all failing in both phases: env_mismatch, not a task without
    FAIL_TO_PASS; one test failing twice is still no_fail_to_pass."""
    from cra.harness.judge import judge
    from cra.harness.verdicts import PytestRun

    def run(phase: str, outcomes: dict[str, str]) -> PytestRun:
        r = PytestRun(phase, 1)
        r.outcomes = {t: (o, 0.1) for t, o in outcomes.items()}
        r.collected, r.exitstatus = len(outcomes), 1
        return r

    many = {f"t.py::t{i}": "failed" for i in range(3)}
    assert judge([run("before", many)], [run("after", many)]).verdict == "env_mismatch"
    one = {"t.py::t0": "failed"}
    assert judge([run("before", one)], [run("after", one)]).verdict == "no_fail_to_pass"
