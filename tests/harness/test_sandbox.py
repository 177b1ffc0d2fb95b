"""The sandbox holds against hostile test code: no network (not even the host's
loopback), no writes outside the run's own folders, fork bombs and memory hogs stopped
by the limits, hung runs killed at their timeout."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cra.harness import sandbox
from cra.harness.sandbox import Limits, SandboxUnavailable, choose_isolation, run_sandboxed

UID = 61000
# The system interpreter when there is one: reachable by the sandbox uid in every mode.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PREFIX = Path(os.path.realpath(PYTHON)).parents[1]


def _available(isolation: str) -> bool:
    return sandbox.probe(isolation, sandbox.sandbox_uid(UID)) is None


ISOLATIONS = [
    pytest.param(i, marks=pytest.mark.skipif(not _available(i), reason=f"{i} cannot run here"))
    for i in ("bwrap", "unshare")
]


def _run(
    tmp_path: Path, code: str, isolation: str, limits: Limits | None = None
) -> tuple[sandbox.SandboxResult, Path]:
    run = tmp_path / "run"
    if isolation == "unshare":
        # unshare keeps the host's file system: the run must sit where the sandbox uid
        # can reach it (pytest's temp folders are private).
        shared = Path(tempfile.mkdtemp(prefix="cra-sandbox-test-"))
        shared.chmod(0o755)
        request_cleanup.append(shared)
        run = shared / "run"
    work, home, tmp = run / "work", run / "home", run / "tmp"
    for folder in (work, home, tmp):
        folder.mkdir(parents=True)
    uid = sandbox.sandbox_uid(UID) if isolation != "none" else None
    sandbox.prepare_owned([run], uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
    result = run_sandboxed(
        [PYTHON, "-c", code],
        isolation=isolation,
        cwd=work,
        writable=[work, home, tmp],
        readonly=[PREFIX],
        env=env,
        limits=limits or Limits(wall_s=30, memory_mb=1024, max_processes=64, cpu_s=30),
        logs=tmp_path / "logs",
        uid=uid,
    )
    return result, run


request_cleanup: list[Path] = []


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    while request_cleanup:
        shutil.rmtree(request_cleanup.pop(), ignore_errors=True)


@pytest.fixture
def loopback_server():
    """A TCP server on the host's loopback that answers b'hello' to any connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


CONNECT = """
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("GOT", s.recv(5).decode())
except OSError as exc:
    print("REFUSED", type(exc).__name__)
    sys.exit(3)
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_server_on_the_host_loopback_is_unreachable(tmp_path, loopback_server, isolation):
    result, _ = _run(tmp_path, CONNECT.format(port=loopback_server), isolation)
    assert result.returncode == 3, result.stdout_tail + result.stderr_tail
    assert "REFUSED" in result.stdout_tail
    # The same code with no sandbox reaches it: the check above can fail.
    control, _ = _run(tmp_path / "control", CONNECT.format(port=loopback_server), "none")
    assert control.returncode == 0 and "GOT hello" in control.stdout_tail


WRITES = """
import os, pathlib
home = pathlib.Path(os.environ["HOME"])
(home / ".bashrc").write_text("owned")
done = []
for target in {targets!r}:
    try:
        pathlib.Path(target).write_text("escaped")
        done.append(target)
    except OSError:
        pass
print("WROTE", done)
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_writes_to_home_and_outside_the_run_leave_the_host_untouched(
    tmp_path, isolation, isolated_home
):
    outside = tmp_path / "host-file.txt"
    real_home_file = isolated_home / "planted.txt"
    code = WRITES.format(targets=[str(outside), str(real_home_file)])
    result, run = _run(tmp_path, code, isolation)
    assert result.returncode == 0, result.stderr_tail
    assert "WROTE []" in result.stdout_tail
    assert not outside.exists() and not real_home_file.exists()
    assert (run / "home" / ".bashrc").read_text() == "owned"  # its private HOME
    assert not (isolated_home / ".bashrc").exists()


FORK_BOMB = """
import os, time
children = 0
try:
    for _ in range(2000):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as exc:
    print("STOPPED", children, type(exc).__name__)
else:
    print("UNSTOPPED", children)
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_fork_bomb_is_stopped_by_the_process_limit(tmp_path, isolation):
    limits = Limits(wall_s=20, memory_mb=1024, max_processes=40, cpu_s=20)
    started = time.perf_counter()
    result, _ = _run(tmp_path, FORK_BOMB, isolation, limits)
    assert "STOPPED" in result.stdout_tail, result.stdout_tail + result.stderr_tail
    children = int(result.stdout_tail.split("STOPPED")[1].split()[0])
    assert children < 40
    # Its sleeping children die with the sandbox instead of holding the run for 30 s.
    assert time.perf_counter() - started < 20


MEMORY_HOG = """
try:
    hog = bytearray(3 * 1024 ** 3)
    print("ALLOCATED", len(hog))
except MemoryError:
    print("DENIED")
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_memory_hog_is_stopped_by_the_memory_limit(tmp_path, isolation):
    limits = Limits(wall_s=20, memory_mb=512, max_processes=64, cpu_s=20)
    result, _ = _run(tmp_path, MEMORY_HOG, isolation, limits)
    assert "DENIED" in result.stdout_tail, result.stdout_tail + result.stderr_tail


@pytest.mark.parametrize("isolation", [*ISOLATIONS, "none"])
def test_a_hung_run_is_killed_at_its_timeout(tmp_path, isolation):
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    limits = Limits(wall_s=1.5, memory_mb=1024, max_processes=64, cpu_s=60)
    started = time.perf_counter()
    result, _ = _run(tmp_path, code, isolation, limits)
    assert result.timed_out and result.returncode is not None
    assert time.perf_counter() - started < 10
    assert result.isolation == isolation


def test_no_sandbox_is_refused_unless_unsafe_is_allowed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither bwrap nor unshare can be found
    monkeypatch.setattr(sandbox, "_PROBED", {})
    with pytest.raises(SandboxUnavailable, match="no sandbox is available") as info:
        choose_isolation(allow_unsafe=False, uid=None)
    assert "--unsafe-no-sandbox" in (info.value.hint or "")
    assert choose_isolation(allow_unsafe=True, uid=None) == "none"


def test_limits_reject_non_positive_values():
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(wall_s=1, memory_mb=0, max_processes=1, cpu_s=1)
