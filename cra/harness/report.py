"""The report of cra's pytest plugin: a file cra opens itself and hands in as a descriptor,
read back with a size cap and every record checked, and what a run's report and exit make
of the run."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path

from cra.errors import CraError
from cra.fsutil import CHUNK
from cra.harness.verdicts import PytestRun
from cra.sandbox import SandboxResult

# pytest's exit codes: 0 all passed, 1 some failed, 2 interrupted, 3 internal error,
# 4 usage error, 5 no tests collected.
PYTEST_BROKEN = frozenset({2, 3, 4})
OUTCOMES = frozenset({"passed", "failed", "error", "skipped"})
REPORT_FD_MIN = 64
REPORT_MAX_BYTES = 32 << 20
REPORT_MAX_NUMBER = 1e12
REPORT_MESSAGE_CHARS = 2000
NUMBER = (int, float)
REPORT_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "collected": {"count": int},
    "collect_error": {"nodeid": str, "message": str},
    "test": {"nodeid": str, "outcome": str, "duration": NUMBER},
    "finish": {"exitstatus": int},
}
"""Each record kind of the plugin's report, with the fields it must carry and their types."""


class BadReport(CraError, ValueError):
    """The report a run of the tests left cannot be trusted or read."""


def classify(ran: SandboxResult, report: int, result: PytestRun) -> PytestRun:
    """Fill `result` from the run and its report, and say whether the run is usable."""
    result.returncode, result.timed_out, result.seconds = (
        ran.returncode,
        ran.timed_out,
        ran.seconds,
    )
    if ran.start_error:
        result.problem, result.detail = "sandbox_failed", ran.start_error
        return result
    result.detail = ran.stderr_tail or ran.stdout_tail
    try:
        finished = _read_report(report, result)
    except BadReport as exc:
        result.problem, result.detail = "bad_report", f"{exc}\n{result.detail}"
        result.outcomes.clear()
        result.collect_errors.clear()
        result.test_seconds = 0.0
        return result
    if ran.timed_out:
        result.problem = "timeout"
    elif result.collected is None and not finished:
        # pytest never started collecting: the sandbox or the environment failed.
        tool_failed = any(
            line.startswith(("bwrap:", "unshare:", "setpriv:"))
            for line in ran.stderr_tail.splitlines()
        )
        result.problem = "sandbox_failed" if tool_failed else "env_failed"
    elif not finished:
        result.problem = "tests_error"
        result.detail = "pytest ended without finishing the session\n" + result.detail
    elif result.exitstatus != ran.returncode:
        result.problem = "tests_error"
        result.detail = f"pytest reported exit {result.exitstatus}, process {ran.returncode}"
    elif result.exitstatus in PYTEST_BROKEN:
        result.problem = "tests_error"
    elif result.exitstatus in (0, 1) and result.collected != len(result.outcomes):
        result.problem = "tests_error"
        result.detail = f"{result.collected} tests collected but {len(result.outcomes)} reported"
    return result


def open_report(folder: Path) -> int:
    """A new, empty file for the plugin's report, open for reading and appending, with no
    name left anywhere (the run can neither swap it nor reach it by a path); the
    descriptor is at least `REPORT_FD_MIN`, above those the sandbox's shell uses."""
    path = folder / f".report-{os.getpid()}-{threading.get_ident()}"
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.unlink(path)
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, REPORT_FD_MIN)
    finally:
        os.close(fd)


def read_report(fd: int) -> list[dict[str, object]]:
    """The plugin's records from the report cra opened (see :func:`open_report`), each
    checked for its kind and fields. A last line cut short by a kill is left out;
    anything else malformed raises BadReport with the reason."""
    size = os.fstat(fd).st_size
    if size > REPORT_MAX_BYTES:
        raise BadReport(f"the report has {size} bytes, more than the {REPORT_MAX_BYTES} allowed")
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    lines = b"".join(chunks).split(b"\n")
    return [_record_of(n, line) for n, line in enumerate(lines[:-1], start=1) if line.strip()]


def _record_of(n: int, line: bytes) -> dict[str, object]:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadReport(f"report line {n} is not UTF-8") from None
    except json.JSONDecodeError:
        raise BadReport(f"report line {n} is not JSON") from None
    kind = record.get("kind") if isinstance(record, dict) else None
    if not isinstance(kind, str) or kind not in REPORT_FIELDS:
        raise BadReport(f"report line {n} is not a record of the plugin")
    for name, wanted in REPORT_FIELDS[kind].items():
        value = record.get(name)
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise BadReport(f"report line {n} ({kind}): {name} is missing or not a {wanted}")
        if isinstance(value, str):
            # Lone surrogates (from file names that are not UTF-8) cannot be stored.
            record[name] = value.encode("utf-8", "backslashreplace").decode("utf-8")
        elif isinstance(value, NUMBER) and not 0 <= value < REPORT_MAX_NUMBER:
            raise BadReport(f"report line {n} ({kind}): {name} is out of range")
    if record["kind"] == "test" and record["outcome"] not in OUTCOMES:
        raise BadReport(f"report line {n}: unknown outcome {str(record['outcome'])[:40]!r}")
    return record


def _number(record: dict[str, object], name: str) -> int | float:
    """A numeric field of a record :func:`_record_of` checked already (narrowed for typing)."""
    value = record[name]
    if not isinstance(value, NUMBER):  # pragma: no cover - _record_of refused it
        raise BadReport(f"report field {name} is not a number")
    return value


def _read_report(fd: int, result: PytestRun) -> bool:
    """Fill `result` from the report's records; return whether the session finished."""
    finished = False
    for record in read_report(fd):
        kind = record["kind"]
        if kind == "collected":
            result.collected = int(_number(record, "count"))
        elif kind == "collect_error":
            message = str(record["message"])[-REPORT_MESSAGE_CHARS:]
            result.collect_errors[str(record["nodeid"])] = message
        elif kind == "test":
            duration = float(_number(record, "duration"))
            result.outcomes[str(record["nodeid"])] = (str(record["outcome"]), duration)
            result.test_seconds += duration
        elif kind == "finish":
            result.exitstatus = int(_number(record, "exitstatus"))
            finished = True
    return finished
