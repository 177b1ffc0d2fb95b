"""`cra train`: a QLoRA adapter from a curated dataset, registered as a candidate version.

The run trains from the frozen base named in `cra.toml` (4-bit NF4, LoRA on the seven
linear projections), checks every sample's completion mask before the first step, and
trains into a staging folder under `training/runs/`. Only a finished adapter is moved to
`adapters/NAME/vN/` and recorded, in one transaction: Ctrl-C at any point leaves no
version behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cra.adapters.registry import Registration, Version, check_name, discard_staged, register
from cra.artefacts import LORA_TARGETS, base_model_dir
from cra.config import TrainSettings
from cra.datasets_store import METHODS, get_dataset, plan_path, read_rows
from cra.db import transaction
from cra.db.train_steps import set_run_version
from cra.errors import UsageError
from cra.training.backends import LoraSpec, cuda_available, load, select_backend
from cra.training.mask import (
    END_OF_TURN,
    MaskError,
    check_completion_masks,
    sequence_length,
)
from cra.training.steps import RunKey, step_recorder
from cra.workspace import Workspace

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainOptions:
    """What `cra train` was asked to do; None means the `[train]` setting."""

    dataset_id: str
    adapter: str
    method: str = "sft"
    base: Path | None = None
    epochs: float | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    backend: str = "auto"
    quantize: bool = True

    def __post_init__(self) -> None:
        check_name(self.adapter)
        if self.method not in METHODS:
            raise UsageError(
                f"unknown method {self.method!r}", hint=f"choose one of {', '.join(METHODS)}"
            )
        if self.epochs is not None and self.epochs <= 0:
            raise UsageError(f"--epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise UsageError(f"--learning-rate must be > 0, got {self.learning_rate}")


@dataclass
class TrainResult:
    """The registered version and how the run went."""

    version: Version
    backend: str
    metrics: dict[str, Any] = field(default_factory=dict)


def hyperparams(train: TrainSettings, options: TrainOptions) -> dict[str, Any]:
    """The run's hyperparameters: `[train]` settings overridden by the options."""
    learning_rate = train.learning_rate if options.method == "sft" else train.dpo_learning_rate
    max_steps = options.max_steps if options.max_steps is not None else train.max_steps
    return {
        "method": options.method,
        "rank": train.rank,
        "alpha": train.alpha,
        "dropout": train.dropout,
        "target_modules": list(LORA_TARGETS),
        "quantization": "nf4-4bit" if options.quantize else "none",
        "learning_rate": options.learning_rate or learning_rate,
        "epochs": options.epochs or train.epochs,
        "max_steps": max_steps,
        "batch_size": options.batch_size or train.batch_size,
        "grad_accum": train.grad_accum,
        "max_length": train.max_length,
        "seed": train.seed,
        "dpo_beta": train.dpo_beta if options.method == "dpo" else None,
        "eos_token": END_OF_TURN,
    }


def resolve_base(workspace_root: Path, base: str, given: Path | None) -> Path:
    """The base model directory: `--base` (`given`), else `[model] base` (`base`)."""
    if given is None:
        return base_model_dir(base, workspace_root)
    path = Path(given).expanduser().absolute()
    if not (path / "config.json").is_file():
        raise UsageError(f"--base {path} is not a model directory (no config.json)")
    return path


def _callback(progress: Progress | None, losses: list[float], logs: list[dict]) -> Any:
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        """Feed the progress bar and keep every logged loss."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None:
                progress(int(state.global_step), int(state.max_steps))

        def on_log(self, args: Any, state: Any, control: Any, logs_: Any = None, **kw: Any) -> None:
            entry = logs_ if logs_ is not None else kw.get("logs") or {}
            if "loss" in entry:
                losses.append(float(entry["loss"]))
            logs.append({k: v for k, v in entry.items() if isinstance(v, int | float)})

    return Record()


def _trainer(method: str, model: Any, tokenizer: Any, lora: Any, data: Any, hp: dict, out: Path):
    common: dict[str, Any] = {
        "output_dir": str(out),
        "num_train_epochs": hp["epochs"],
        "max_steps": hp["max_steps"] or -1,
        "learning_rate": hp["learning_rate"],
        "per_device_train_batch_size": hp["batch_size"],
        "gradient_accumulation_steps": hp["grad_accum"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": hp["seed"],
        "use_cpu": not cuda_available(),
        "disable_tqdm": True,
        "max_length": hp["max_length"],
        "lr_scheduler_type": "constant",
    }
    if method == "sft":
        from trl.trainer.sft_config import SFTConfig
        from trl.trainer.sft_trainer import SFTTrainer

        sft = SFTConfig(completion_only_loss=True, eos_token=END_OF_TURN, packing=False, **common)
        return SFTTrainer(
            model=model,
            args=sft,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=lora,
        )
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    dpo = DPOConfig(beta=hp["dpo_beta"], **common)
    return DPOTrainer(
        model=model, args=dpo, train_dataset=data, processing_class=tokenizer, peft_config=lora
    )


def _check_saved(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("modules_to_save"):
        raise RuntimeError(f"the saved adapter has modules_to_save {config['modules_to_save']}")
    targets = config.get("target_modules") or []
    if sorted(targets) != sorted(LORA_TARGETS):
        raise RuntimeError(f"the saved adapter targets {targets}, not {list(LORA_TARGETS)}")
    return config


def _row_tokens(dataset: Any) -> float:
    """Mean tokens per row of a tokenized trl dataset (every *input_ids column)."""
    columns = [c for c in dataset.column_names if c.endswith("input_ids")]
    total = sum(len(ids) for c in columns for ids in dataset[c])
    return total / max(len(dataset), 1)


def train_adapter(
    workspace: Workspace,
    options: TrainOptions,
    *,
    progress: Progress | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `options.adapter` on its rows of the dataset and register the result as a
    candidate version (see the module docstring for what a run promises)."""
    say = echo or (lambda _m: None)
    base = resolve_base(workspace.root, workspace.config.settings.model.base, options.base)
    with closing(workspace.raw_db()) as conn:
        dataset = get_dataset(conn, workspace.root, options.dataset_id)
        plan = plan_path(conn, dataset.id)
    rows = read_rows(dataset, "train", adapter=options.adapter, method=options.method)
    if not rows:
        raise UsageError(
            f"dataset {dataset.id} has no {options.method} rows for adapter {options.adapter!r}",
            hint="rows are picked by meta.adapter and meta.technique",
        )
    hp = hyperparams(workspace.config.settings.train, options)
    backend = select_backend(options.backend)
    spec = LoraSpec(
        hp["rank"], hp["alpha"], hp["dropout"], hp["max_length"], hp["seed"], options.quantize
    )
    say(f"loading {base} ({hp['quantization']}) with the {backend} backend")
    model, tokenizer, lora = load(backend, base, spec)
    rows, too_long = _fitting_rows(tokenizer, rows, hp["max_length"], say)
    checked = check_completion_masks(tokenizer, rows)
    say(f"{len(rows)} {options.method} rows; {checked} completion masks end with {END_OF_TURN}")
    data = _hf_dataset(options.method, rows)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    staging = workspace.training_dir / "runs" / f".{options.adapter}-{stamp}"
    run = RunKey(f"{options.adapter}-{stamp}", options.adapter, options.method)
    try:
        with closing(workspace.raw_db()) as steps_conn:
            trainer = _trainer(
                options.method, model, tokenizer, lora, data, hp, staging / "trainer"
            )
            trainer.add_callback(step_recorder(steps_conn, run))
            fitted = _fit(trainer, len(rows), staging / "adapter", progress)
            metrics = _metrics(fitted, hp, backend, len(rows), too_long)
            registration = Registration(
                name=options.adapter,
                staged=fitted.adapter_dir,
                base_model=base,
                dataset_id=dataset.id,
                method=options.method,
                hyperparams=hp,
                train_metrics=metrics,
                lineage={
                    "dataset": dataset.id,
                    "dataset_sha256": dataset.sha256,
                    "plan": plan,
                    "train_rows": len(rows),
                },
            )
            version = register(workspace, registration)
            with transaction(steps_conn):
                set_run_version(steps_conn, run.run_id, version.version)
    finally:
        discard_staged(staging)
    say(f"registered {version.ref} as a candidate at {version.path}")
    return TrainResult(version, backend, metrics)


def _fitting_rows(
    tokenizer: Any, rows: list[dict], max_length: int, say: Callable[[str], None]
) -> tuple[list[dict], int]:
    """The rows that fit in `max_length` tokens, and how many were left out.

    A row cut at max_length would lose its end-of-turn token: it is left out, counted."""
    fitting = [r for r in rows if sequence_length(tokenizer, r) <= max_length]
    too_long = len(rows) - len(fitting)
    if too_long:
        say(f"left out {too_long} rows longer than max_length {max_length} tokens")
    if not fitting:
        raise UsageError(
            f"every row is longer than max_length {max_length} tokens",
            hint="raise [train] max_length",
        )
    return fitting, too_long


def _hf_dataset(method: str, rows: list[dict]) -> Any:
    """The rows as a Hugging Face dataset of the columns `method` trains on."""
    from datasets import Dataset as HFDataset

    keys = ("prompt", "completion") if method == "sft" else ("prompt", "chosen", "rejected")
    return HFDataset.from_list([{k: r[k] for k in keys} for r in rows])


@dataclass(frozen=True)
class _Fitted:
    """A finished training run: the trainer, its output, and what its callback logged."""

    trainer: Any
    output: Any
    seconds: float
    adapter_dir: Path
    losses: list[float]
    logs: list[dict]


def _fit(trainer: Any, row_count: int, adapter_dir: Path, progress: Progress | None) -> _Fitted:
    """Train, reporting to `progress`, and save the adapter to `adapter_dir`; raise
    MaskError when the trainer dropped rows as fully masked."""
    if len(trainer.train_dataset) != row_count:
        raise MaskError(
            f"the trainer dropped {row_count - len(trainer.train_dataset)} of {row_count} "
            "rows as fully masked",
            row=0,
        )
    from transformers.trainer_callback import PrinterCallback

    losses: list[float] = []
    logs: list[dict] = []
    trainer.remove_callback(PrinterCallback)  # the progress bar reports instead
    trainer.add_callback(_callback(progress, losses, logs))
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(adapter_dir)
    _check_saved(adapter_dir)
    return _Fitted(trainer, output, seconds, adapter_dir, losses, logs)


def _metrics(
    fitted: _Fitted, hp: dict[str, Any], backend: str, row_count: int, too_long: int
) -> dict[str, Any]:
    """The run's train metrics as registered with the version."""
    trainer, losses, logs, seconds = fitted.trainer, fitted.losses, fitted.logs, fitted.seconds
    steps = int(trainer.state.global_step)
    seen = [e["num_tokens"] for e in logs if "num_tokens" in e]
    rows_seen = steps * hp["batch_size"] * hp["grad_accum"]
    tokens = max(seen) if seen else _row_tokens(trainer.train_dataset) * rows_seen
    return {
        "backend": backend,
        "rows": row_count,
        "rows_too_long": too_long,
        "steps": steps,
        "train_loss": float(fitted.output.training_loss),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "losses": losses,
        "seconds": round(seconds, 3),
        "tokens": int(tokens),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "last_log": next((e for e in reversed(logs) if "loss" in e), {}),
    }
