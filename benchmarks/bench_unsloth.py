"""Training throughput of the Unsloth backend against the plain peft backend, same tiny
model, data, steps and LoRA settings, both QLoRA (4-bit NF4 base).

Runs only where a CUDA GPU and unsloth are present (the only place the Unsloth backend is
ever selected); elsewhere it prints that it skipped and why, and exits 0. Each backend
runs in its own process, because unsloth patches transformers and trl on import.
Usage: python benchmarks/bench_unsloth.py [STEPS] (default 30)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cra.training.backends import cuda_available, unsloth_installed

_ONE = """
import json, sys
from cra.training.train import TrainOptions, train_adapter
from cra.workspace import open_workspace
ws = open_workspace(sys.argv[1])
train_adapter(ws, TrainOptions("bench", "scope", max_steps=2, backend=sys.argv[2]))  # warm-up
r = train_adapter(ws, TrainOptions("bench", "scope", max_steps=int(sys.argv[3]),
                                   backend=sys.argv[2]))
print("RESULT " + json.dumps(r.metrics))
"""


def _run(root: Path, backend: str, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _ONE, str(root), backend, str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    if not cuda_available():
        print("skipped: no CUDA GPU here (the Unsloth backend is only selected with CUDA)")
        return
    if not unsloth_installed():
        print("skipped: unsloth is not installed (install the `gpu` extra on a CUDA machine)")
        return
    from cra.fixtures.datasets import toy_rows, write_dataset
    from cra.fixtures.model import build_tiny_model
    from cra.workspace import init_workspace, open_workspace

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        root = Path(tmp) / "ws"
        init_workspace(root)
        (root / "cra.toml").write_text(f'[model]\nbase = "{model}"\n[train]\nbatch_size = 8\n')
        write_dataset(open_workspace(root), "bench", train_rows=toy_rows() * 8)
        peft = _run(root, "peft", steps)
        unsloth = _run(root, "unsloth", steps)
    for label, m in (("peft", peft), ("unsloth", unsloth)):
        print(
            f"{label:<8}: {m['tokens_per_s']:9.0f} tokens/s ({m['tokens']} tokens, "
            f"{m['seconds']:.2f} s)"
        )
    print(f"unsloth / peft: {unsloth['tokens_per_s'] / peft['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
