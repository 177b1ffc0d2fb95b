"""The sandbox's limits hold for the whole run, not per process: memory of all its
processes and of its `/tmp` together, a disk cap on its writable folders, and no process
of a run alive once `run_sandboxed` returns, so the process limit never grows with
leftovers. Each runs with the enforcement this machine gives (`auto`: a cgroup where one
can be made) and with the watchdog that stands in where none can."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from cra import sandbox
from cra.sandbox import Limits
from tests.sandbox_helpers import UID, alive_with, available, run_code, shmem_peak

ISOLATED = [
    pytest.param(i, marks=pytest.mark.skipif(not available(i), reason=f"{i} cannot run here"))
    for i in ("bwrap", "unshare")
]
ENFORCE = ["auto", "watchdog"]
MB = 1024 * 1024


def _limits(**overrides: float) -> Limits:
    values = {"wall_s": 30, "memory_mb": 256, "max_processes": 64, "cpu_s": 30, **overrides}
    return Limits(**values)


FOUR_CHILDREN = """
import os, time
for _ in range(4):
    if os.fork() == 0:
        hold = bytearray(100 * 1024 * 1024)  # written, so each child owns its pages
        print("CHILD HOLDS", flush=True)
        time.sleep(60)
        os._exit(0)
time.sleep(60)
print("UNSTOPPED")
"""


@pytest.mark.parametrize("enforce", ENFORCE)
@pytest.mark.parametrize("isolation", [*ISOLATED, "none"])
def test_children_together_over_memory_mb_stop_the_run_for_memory(tmp_path, isolation, enforce):
    """Four children of 100 MB each, under memory_mb=256: each alone fits, all together
    do not; the whole run stops and says memory, long before its timeout."""
    result, _ = run_code(tmp_path, FOUR_CHILDREN, isolation, _limits(), enforce=enforce)
    assert result.limit == "memory", (result, result.stderr_tail)
    assert not result.timed_out and result.seconds < 20
    assert "UNSTOPPED" not in result.stdout_tail
    assert result.survivors == 0


FILL_TMP = """
import time
written = 0
try:
    with open("/tmp/fill", "wb") as fh:
        for _ in range(40):
            fh.write(b"x" * (10 * 1024 * 1024))
            fh.flush()
            written += 10
except OSError as exc:
    print("FULL AT", written, type(exc).__name__, flush=True)
else:
    print("WROTE ALL", written, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("enforce", ENFORCE)
@pytest.mark.parametrize("isolation", ISOLATED)
def test_writing_past_memory_mb_to_tmp_stops_the_run_and_spares_host_memory(
    tmp_path, isolation, enforce
):
    """400 MB written to the sandbox's /tmp under memory_mb=256: /tmp is a tmpfs of at
    most memory_mb whose pages count as the run's memory, so the run stops for memory and
    the host's shared memory never grows by what the run tried to write."""
    with shmem_peak() as shmem:
        result, _ = run_code(tmp_path, FILL_TMP, isolation, _limits(), enforce=enforce)
    assert result.limit == "memory", (result, result.stderr_tail)
    assert "WROTE ALL" not in result.stdout_tail
    assert not result.timed_out
    start, peak = shmem
    assert peak - start < 300 * MB, f"host shared memory grew by {(peak - start) // MB} MB"


BIG_FILE = """
import time
with open("big", "wb") as fh:
    for _ in range(20):
        fh.write(b"x" * (10 * 1024 * 1024))
        fh.flush()
print("UNSTOPPED", flush=True)
time.sleep(60)
"""

MANY_FILES = """
import time
for i in range(20):
    with open(f"part-{i}", "wb") as fh:
        fh.write(b"x" * (5 * 1024 * 1024))
print("WROTE", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("code", [BIG_FILE, MANY_FILES], ids=["one-file", "many-files"])
@pytest.mark.parametrize("enforce", ENFORCE)
@pytest.mark.parametrize("isolation", [*ISOLATED, "none"])
def test_writing_past_the_disk_cap_to_the_scratch_folders_stops_the_run(
    tmp_path, isolation, enforce, code
):
    """disk_mb=50: one file of 200 MB (over the per-file cap) or twenty of 5 MB (each
    under it, 100 MB together) in the tree copy; the run stops and says disk."""
    limits = _limits(memory_mb=512, disk_mb=50)
    result, run = run_code(tmp_path, code, isolation, limits, enforce=enforce)
    assert result.limit == "disk", (result, result.stderr_tail)
    assert "UNSTOPPED" not in result.stdout_tail
    assert not result.timed_out and result.seconds < 20
    written = sum(p.stat().st_size for p in (run / "work").iterdir())
    assert written <= 110 * MB


DAEMONS = """
import os, subprocess, sys
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", {marker!r}],
                             start_new_session=True, stdout=subprocess.DEVNULL)
            os._exit(0)
        os._exit(0)
import time; time.sleep(0.5)
print("LEFT DAEMONS", flush=True)
"""


@pytest.mark.parametrize("enforce", ENFORCE)
@pytest.mark.parametrize("isolation", [*ISOLATED, "none"])
def test_daemonized_children_are_gone_when_the_run_returns(tmp_path, isolation, enforce):
    """Daemonized children of a sandboxed run are gone when the run returns."""
    if isolation == "none" and enforce == "watchdog":
        pytest.skip("unisolated and without a cgroup, a daemon leaves the run unseen")
    marker = f"cra-daemon-{uuid.uuid4().hex}"
    code = DAEMONS.format(marker=marker)
    result, _ = run_code(tmp_path, code, isolation, _limits(), enforce=enforce)
    assert result.returncode == 0 and "LEFT DAEMONS" in result.stdout_tail, result.stderr_tail
    assert alive_with(marker) == []
    assert result.survivors == 0


LEAVES_DYING = """
import os, resource, signal, time
print("NPROC", resource.getrlimit(resource.RLIMIT_NPROC)[0], flush=True)
for _ in range(5):
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(300)
        os._exit(0)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs tests as a sandbox uid")
@pytest.mark.parametrize("enforce", ENFORCE)
@pytest.mark.parametrize("isolation", [*ISOLATED, "none"])
def test_ten_runs_leaving_processes_keep_the_same_process_limit(tmp_path, isolation, enforce):
    """Runs that leave processes behind do not eat into the next runs' process limit."""
    limits = _limits(max_processes=32)
    seen = set()
    for i in range(10):
        result, _ = run_code(tmp_path / str(i), LEAVES_DYING, isolation, limits, enforce=enforce)
        assert result.returncode == 0, result.stderr_tail
        assert result.survivors == 0
        seen.add(result.enforcement.process_limit)
        if isolation != "none":  # unisolated, the code runs as cra's uid (root: unlimited)
            assert f"NPROC {limits.max_processes}" in result.stdout_tail
            assert sandbox._processes_of(result.enforcement.uid) == 0
    assert seen == {limits.max_processes}


WAITS = """
import time
time.sleep(2)
print("FINISHED", flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs tests as a sandbox uid")
@pytest.mark.parametrize("isolation", ISOLATED)
def test_concurrent_runs_have_their_own_uid_and_ending_one_spares_the_other(tmp_path, isolation):
    """Concurrent runs get their own uid, and ending one leaves the other running."""
    results = {}

    def waiting() -> None:
        results["waits"], _ = run_code(tmp_path / "waits", WAITS, isolation, _limits())

    thread = threading.Thread(target=waiting)
    thread.start()
    leaves, _ = run_code(tmp_path / "leaves", LEAVES_DYING, isolation, _limits())
    thread.join()
    waits = results["waits"]
    assert waits.returncode == 0 and "FINISHED" in waits.stdout_tail, waits.stderr_tail
    assert leaves.survivors == 0
    uids = {waits.enforcement.uid, leaves.enforcement.uid}
    assert len(uids) == 2 and all(UID <= u < UID + sandbox.SLOTS for u in uids)


def test_each_run_records_its_enforcement_and_what_it_does_not_hold(tmp_path):
    """Each run records how its limits are enforced and which are not enforced."""
    isolation = next((i for i in ("bwrap", "unshare") if available(i)), "none")
    result, _ = run_code(tmp_path, "pass", isolation, _limits(), enforce="watchdog")
    record = (tmp_path / "logs" / "sandbox").read_text()
    assert f"isolation: {isolation}" in record
    assert "memory: watchdog" in record
    assert "not enforced: memory is sampled every 100 ms" in record
    assert result.enforcement.not_enforced().startswith("memory is sampled")


def test_a_disk_cap_must_be_positive():
    """The disk cap must be positive; the scratch size defaults to 400 MB."""
    with pytest.raises(ValueError, match="disk_mb"):
        Limits(wall_s=1, memory_mb=1, max_processes=1, cpu_s=1, disk_mb=0)
    assert Limits(wall_s=1, memory_mb=100, max_processes=1, cpu_s=1).scratch_mb == 400
