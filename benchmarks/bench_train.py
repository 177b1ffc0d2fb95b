"""Training throughput of the CPU backend on the tiny model: QLoRA (4-bit NF4 base) vs
plain LoRA (full-precision base), same model, data, steps and LoRA settings.

Measured in the same run, through `cra train`'s own code path (trl SFTTrainer, peft,
bitsandbytes): tokens per second of each, and their ratio. A reference for the GPU
numbers of `bench_unsloth.py`. Usage: python benchmarks/bench_train.py [STEPS] (default 20)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cra.fixtures.datasets import toy_rows, write_dataset
from cra.fixtures.model import build_tiny_model
from cra.training.train import TrainOptions, train_adapter
from cra.workspace import init_workspace, open_workspace


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        root = Path(tmp) / "ws"
        init_workspace(root)
        (root / "cra.toml").write_text(f'[model]\nbase = "{model}"\n[train]\nbatch_size = 8\n')
        workspace = open_workspace(root)
        rows = toy_rows() * 8  # 48 SFT rows, 48 DPO rows
        write_dataset(workspace, "bench", train_rows=rows)
        results = {}
        train_adapter(workspace, TrainOptions("bench", "scope", max_steps=2))  # warm-up
        for label, quantize in (("plain LoRA", False), ("QLoRA nf4", True)):
            result = train_adapter(
                workspace, TrainOptions("bench", "scope", max_steps=steps, quantize=quantize)
            )
            results[label] = result.metrics
        print(f"model             : tiny Qwen2 (2 layers, hidden 128), CPU, {steps} steps x 8 rows")
        for label, m in results.items():
            loss = f"loss {m['first_loss']:.2f} -> {m['last_loss']:.2f}"
            print(
                f"{label:<18}: {m['tokens_per_s']:8.0f} tokens/s ({m['tokens']} tokens in "
                f"{m['seconds']:.2f} s, {loss})"
            )
        ratio = results["QLoRA nf4"]["tokens_per_s"] / results["plain LoRA"]["tokens_per_s"]
        print(f"QLoRA / plain     : {ratio:8.2f}x (below 1: what 4-bit dequantisation costs)")


if __name__ == "__main__":
    main()
