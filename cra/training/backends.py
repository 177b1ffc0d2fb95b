"""Where the model and its LoRA layers come from: Unsloth on CUDA, else plain
transformers + peft + bitsandbytes (which also runs on CPU).

Both load the base in 4-bit NF4 (QLoRA) from its local directory, put LoRA on the seven
linear projections, never `modules_to_save` (vLLM refuses adapters that have them), and
hand trl a model to train. The base is always the frozen original, never a merged model.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cra.artefacts import LORA_TARGETS
from cra.errors import UsageError
from cra.quiet import quiet_probes

BACKENDS = ("auto", "peft", "unsloth")


@dataclass(frozen=True)
class LoraSpec:
    """The LoRA and loading settings of a run."""

    rank: int
    alpha: int
    dropout: float
    max_length: int
    seed: int
    quantize: bool = True  # 4-bit NF4 base; False = plain LoRA on a full-precision base


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def unsloth_installed() -> bool:
    """Whether unsloth can be imported (without importing it: it patches on import)."""
    return importlib.util.find_spec("unsloth") is not None


def select_backend(requested: str = "auto") -> str:
    """The backend a run uses: Unsloth only when CUDA is present and it is installed."""
    if requested not in BACKENDS:
        raise UsageError(f"unknown backend {requested!r}", hint=f"choose {', '.join(BACKENDS)}")
    if requested == "peft":
        return "peft"
    usable = cuda_available() and unsloth_installed()
    if requested == "unsloth" and not usable:
        raise UsageError(
            "the unsloth backend needs a CUDA GPU and the unsloth package",
            hint="use --backend peft (the default on machines without CUDA)",
        )
    return "unsloth" if usable else "peft"


def load_peft(base: Path, spec: LoraSpec) -> tuple[Any, Any, Any]:
    """(model, tokenizer, peft LoraConfig) with transformers + bitsandbytes: trl applies
    the LoRA config to the 4-bit model."""
    import torch
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    cuda = cuda_available()
    compute = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": compute}
    if spec.quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
    if cuda:
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, **kwargs)
    if spec.quantize:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cuda)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(LORA_TARGETS),
        modules_to_save=None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return model, tokenizer, config


def load_unsloth(base: Path, spec: LoraSpec) -> tuple[Any, Any, Any]:
    """(model with LoRA applied, tokenizer, None) with Unsloth's FastLanguageModel: its
    4-bit loader and fused LoRA kernels. Needs CUDA. Statistics pings are switched off."""
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from unsloth import FastLanguageModel  # imported first: it patches transformers and trl

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base),
        max_seq_length=spec.max_length,
        load_in_4bit=spec.quantize,
        dtype=None,
        local_files_only=True,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(LORA_TARGETS),
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=spec.seed,
    )
    return model, tokenizer, None


def quiet() -> None:
    """Silence the libraries' own progress bars (cra shows one bar per run) and their
    deprecation notices about their own internals, which a user cannot act on."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    for module in ("transformers", "trl", "peft", "accelerate", "torch"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=rf"{module}(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=rf"{module}(\.|$)")
    quiet_probes()


def load(backend: str, base: Path, spec: LoraSpec) -> tuple[Any, Any, Any]:
    """Load `base` for training with `backend` ("peft" or "unsloth")."""
    quiet()
    if backend == "unsloth":
        return load_unsloth(base, spec)
    if backend == "peft":
        return load_peft(base, spec)
    raise ValueError(f"backend must be 'peft' or 'unsloth', got {backend!r}")
