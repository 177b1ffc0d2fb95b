"""Serving throughput: a mixed-adapter workload against a base-only workload of the same
requests, on one vLLM server with the tiny model and three LoRA adapters.

Both workloads send the same prompts with the same lengths (greedy, `ignore_eos`, fixed
completion length) from concurrent clients; the mixed one spreads them over the three
adapters. Prints completion tokens/s of each and their ratio (mixed / base). Needs vLLM
(`make vllm`). Usage: python benchmarks/bench_serve.py [CLIENTS] [REQUESTS_PER_CLIENT]
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from cra.fixtures.adapters import make_adapter
from cra.fixtures.model import build_tiny_model
from cra.serving.process import start_vllm

ADAPTERS = ("scope@v1", "precision@v1", "planning@v1")
TOKENS = 64


def workload(url: str, models: list[str], clients: int) -> tuple[float, int]:
    """Send one request per entry of `models` from `clients` threads: (seconds, tokens)."""

    def one(args: tuple[int, str]) -> int:
        i, model = args
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"Plan task {i}"}],
            "max_tokens": TOKENS,
            "temperature": 0.0,
            "ignore_eos": True,
        }
        response = httpx.post(f"{url}/chat/completions", json=body, timeout=600)
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(one, enumerate(models)))
    return time.perf_counter() - start, tokens


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    per_client = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    python = Path(".venv-vllm/bin/python").absolute()
    if not python.exists():
        print("skipped: vLLM is not installed (run `make vllm`)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_model(Path(tmp) / "base")
        modules = [
            f"{name}={make_adapter(base, Path(tmp) / name, seed=i)}"
            for i, name in enumerate(ADAPTERS)
        ]
        model_args = ["--dtype", "float32", "--max-model-len", "1024"]
        lora_args = ["--enable-lora", "--max-lora-rank", "8", "--max-loras", str(len(ADAPTERS))]
        lora_args += ["--lora-modules", *modules]
        server = start_vllm(
            python=python,
            model=base,
            served_model="base",
            log_path=Path(tmp) / "vllm.log",
            extra_args=[*model_args, *lora_args],
        )
        try:
            n = clients * per_client
            workload(server.base_url, ["base"] * clients, clients)  # warm up
            workload(server.base_url, [ADAPTERS[i % 3] for i in range(clients)], clients)
            base_s, base_tokens = workload(server.base_url, ["base"] * n, clients)
            mixed = [ADAPTERS[i % len(ADAPTERS)] for i in range(n)]
            mixed_s, mixed_tokens = workload(server.base_url, mixed, clients)
        finally:
            server.stop()
    base_rate, mixed_rate = base_tokens / base_s, mixed_tokens / mixed_s
    print(f"requests          : {n} from {clients} clients, {TOKENS} completion tokens each")
    print(f"base only         : {base_rate:8.0f} completion tokens/s")
    print(f"mixed, 3 adapters : {mixed_rate:8.0f} completion tokens/s")
    print(f"mixed / base      : {mixed_rate / base_rate:8.2f}")


if __name__ == "__main__":
    main()
