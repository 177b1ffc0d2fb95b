"""The fixed cost of one sandboxed run: `python -c pass` under each isolation that works
here, `runs` times each, with the run's limits enforced for the whole sandbox.

Prints the median and mean seconds per run for each isolation. Compare a checkout
before and after a change to the sandbox by running this on both.
Usage: python benchmarks/bench_sandbox.py [RUNS] (default 20)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cra import sandbox
from cra.sandbox import Limits, run_sandboxed

UID = 61000
PYTHON = os.path.realpath(sys.executable)


def _one(base: Path, isolation: str) -> float:
    run = Path(tempfile.mkdtemp(dir=base))
    run.chmod(0o755)
    work, home, tmp = run / "work", run / "home", run / "tmp"
    for folder in (work, home, tmp):
        folder.mkdir()
    uid = sandbox.sandbox_uid(UID) if isolation != "none" else None
    sandbox.prepare_owned([run], uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp)}
    started = time.perf_counter()
    result = run_sandboxed(
        [PYTHON, "-c", "pass"],
        isolation=isolation,
        cwd=work,
        writable=[work, home, tmp],
        readonly=[Path(PYTHON).parents[1]],
        env=env,
        limits=Limits(wall_s=30, memory_mb=1024, max_processes=64, cpu_s=30),
        logs=run / "logs",
        uid=uid,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{isolation}: {result.start_error or result.stderr_tail}")
    return seconds


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as name:
        base = Path(name)
        base.chmod(0o755)
        for isolation in ("bwrap", "unshare", "none"):
            if sandbox.probe(isolation, sandbox.sandbox_uid(UID)) is not None:
                print(f"{isolation:8} cannot run here")
                continue
            _one(base, isolation)  # warm the page cache
            times = [_one(base, isolation) for _ in range(runs)]
            print(
                f"{isolation:8} median {statistics.median(times) * 1000:7.1f} ms"
                f"  mean {statistics.mean(times) * 1000:7.1f} ms  ({runs} runs)"
            )


if __name__ == "__main__":
    main()
