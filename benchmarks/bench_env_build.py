"""Environment-build benchmark: uv (cold and warm cache) against pip --no-index.

Packs a small project that needs ~20 pure-Python wheels from a local wheelhouse (rebuilt
from this environment's installed distributions, no network), then builds its offline
environment with `cra env build` code paths:

- uv cold: an empty uv cache;
- uv warm: the uv cache filled by an earlier build, the environment itself rebuilt;
- no-op:   the same environment again (cached by its hash: nothing is built);
- pip:     `python -m venv` + `pip install --no-index --find-links`, same wheels.

All measured in the same run; prints the times and the ratios. Targets (issue 3): warm
build <= 0.5 s and at least 10x faster than pip.

    python benchmarks/bench_env_build.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Import this checkout's cra, whatever the current directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cra.env.build import build_env
from cra.fixtures.wheelhouse import BENCH_WHEELS, build_wheelhouse
from cra.repos.pack import PackOptions, pack
from cra.workspace import init_workspace
from tests.repos.helpers import make_repo


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cra-bench-") as tmp_name:
        tmp = Path(tmp_name)
        wheels = build_wheelhouse(tmp / "wheelhouse", BENCH_WHEELS)
        reqs = "\n".join(BENCH_WHEELS) + "\n"
        repo = make_repo(
            tmp / "proj",
            [
                (
                    "2024-05-01T00:00:00Z",
                    {
                        "requirements.txt": reqs,
                        "proj/__init__.py": "",
                        "tests/test_p.py": "def test(): pass\n",
                    },
                )
            ],
        )
        ws = init_workspace(tmp / "ws").workspace
        packed = pack(ws, str(repo), PackOptions(name="proj", find_links=tmp / "wheelhouse"))
        n = len(packed.manifest.environments[0].wheels)
        envs = ws.harness_dir / "envs"
        cache = ws.harness_dir / "uv-cache"

        def fresh(installer: str, keep_cache: bool) -> float:
            shutil.rmtree(envs, ignore_errors=True)
            if not keep_cache:
                shutil.rmtree(cache, ignore_errors=True)
            seconds, built = _timed(lambda: build_env(ws, "proj", installer=installer))
            if built.cached:  # type: ignore[attr-defined]
                raise RuntimeError("expected a fresh build")
            return seconds

        cold = [fresh("uv", keep_cache=False) for _ in range(args.repeat)]
        warm = [fresh("uv", keep_cache=True) for _ in range(args.repeat)]
        noop = [
            _timed(lambda: build_env(ws, "proj", installer="uv"))[0] for _ in range(args.repeat)
        ]
        pip = [fresh("pip", keep_cache=True) for _ in range(max(1, args.repeat // 2))]
    med = statistics.median
    print(f"environment build, {n} wheels ({len(wheels)} in the wheelhouse), median of runs")
    print(f"  uv cold cache    {med(cold):7.3f} s")
    print(f"  uv warm cache    {med(warm):7.3f} s")
    print(f"  no-op (cached)   {med(noop):7.3f} s")
    print(f"  pip --no-index   {med(pip):7.3f} s")
    print(f"  ratio pip / uv warm  {med(pip) / med(warm):6.1f}x  (target >= 10x)")
    print(f"  ratio pip / uv cold  {med(pip) / med(cold):6.1f}x")
    ok = med(warm) <= 0.5 and med(pip) / med(warm) >= 10
    print(f"  targets: warm <= 0.5 s and >= 10x pip: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
