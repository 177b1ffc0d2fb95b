"""A pytest plugin that writes each test's outcome as one JSON line, as it happens.

Loaded with `-p cra_pytest_report` (its folder on PYTHONPATH). It writes to the file
descriptor `$CRA_REPORT_FD` when set (a file cra opened before the run and handed in, so
that nothing the tests do can make cra read another file), else to `$CRA_REPORT_PATH`.
Lines are ASCII JSON: `{"kind": "collected", "count": N}`, one
`{"kind": "collect_error", "nodeid": ..., "message": ...}` per file that failed to
collect, one `{"kind": "test", "nodeid": ..., "outcome": ..., "duration": ...}` per test
(outcome: passed, failed, error, skipped), and `{"kind": "finish", "exitstatus": N}`.
Node ids are written exactly as pytest reports them. Lines are flushed as they are
written, so a run killed half-way still leaves what it finished. It imports nothing
but the standard library and pytest: it runs in the repository's environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

_state: dict[str, Any] = {"file": None, "tests": {}}


def _write(record):
    fh = _state["file"]
    if fh is None:
        fh = _state["file"] = _open()
        if fh is None:
            return
    fh.write(json.dumps(record) + "\n")
    fh.flush()


def _open():
    fd = os.environ.get("CRA_REPORT_FD")
    if fd:
        return os.fdopen(int(fd), "a", encoding="ascii")
    path = os.environ.get("CRA_REPORT_PATH")
    return open(path, "a", encoding="ascii") if path else None


def pytest_collectreport(report):
    if report.failed:
        _write(
            {
                "kind": "collect_error",
                "nodeid": report.nodeid,
                "message": str(report.longrepr)[-2000:],
            }
        )


def pytest_collection_finish(session):
    _write({"kind": "collected", "count": len(session.items)})


def pytest_runtest_logreport(report):
    tests = _state["tests"]
    entry = tests.setdefault(report.nodeid, {"outcome": None, "duration": 0.0})
    entry["duration"] += report.duration
    xfail = hasattr(report, "wasxfail")
    if report.when == "setup":
        if report.failed:
            entry["outcome"] = "error"
        elif report.skipped:
            entry["outcome"] = "skipped"
    elif report.when == "call":
        if xfail:
            entry["outcome"] = "skipped" if report.skipped else "passed"
        else:
            entry["outcome"] = report.outcome
    elif report.when == "teardown":
        if report.failed and entry["outcome"] in (None, "passed"):
            entry["outcome"] = "error"
        outcome = entry["outcome"] or "error"
        _write(
            {
                "kind": "test",
                "nodeid": report.nodeid,
                "outcome": outcome,
                "duration": round(entry["duration"], 6),
            }
        )
        del tests[report.nodeid]


def pytest_sessionfinish(session, exitstatus):
    _write({"kind": "finish", "exitstatus": int(exitstatus)})
    if _state["file"] is not None:
        _state["file"].close()
        _state["file"] = None
