"""`cra adapter eval`: score a version on a dataset's eval split (the chronological
holdout), next to the base model on the same examples.

Generation goes through the running `cra serve` server when there is one (loading the
version for the eval if it is not loaded), else in-process with transformers + peft on
the base loaded as the adapter was trained (4-bit NF4 for QLoRA), greedy. The result is
stored on the version, keyed by the holdout (dataset id and the eval file's sha256), so
promotion compares like with like.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from cra.adapters.metrics import (
    Reference,
    extract_patch,
    mean_metrics,
    primary_metrics,
    score_output,
)
from cra.adapters.registry import Version, get_version, parse_versioned, store_eval, verify_files
from cra.artefacts import check_compatible
from cra.datasets_store import get_dataset, read_rows, reference_text
from cra.db.outcomes import latest_validation
from cra.db.tasks import task_gold
from cra.errors import CraError, UsageError
from cra.fsutil import now_iso
from cra.harness.grading import grade_patch
from cra.llm.client import LLMClient
from cra.ranker.evaluate import evaluate_ranker
from cra.serving.server import load_version, unload_version
from cra.serving.state import ServeState, running_state
from cra.training.backends import quiet
from cra.workspace import Workspace

Progress = Callable[[int, int], None]
Generate = Callable[[list[dict[str, Any]]], tuple[str, str]]  # messages -> (adapter, base)


def _reference(conn: sqlite3.Connection, root: Path, row: dict[str, Any]) -> Reference:
    meta = row.get("meta", {})
    files: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    repo_dir = parent = None
    task = task_gold(conn, str(meta.get("task_id")))
    if task is not None:
        files = tuple(f["path"] for f in json.loads(task.gold_files) if isinstance(f, dict))
        symbols = tuple(
            f"{s['path']}::{s['qualname']}"
            for s in json.loads(task.gold_symbols)
            if isinstance(s, dict)
        )
        parent = task.parent_sha
        candidate = root / "repos" / task.repo / "repo"
        repo_dir = candidate if candidate.is_dir() else None
    task_id = str(meta.get("task_id")) if meta.get("task_id") else None
    verdict = None if task_id is None else latest_validation(conn, task_id)
    verified = verdict is not None and verdict.verdict == "verified"
    return Reference(reference_text(row), files, symbols, repo_dir, parent, task_id, verified)


GRADED = ("resolved", "unresolved", "patch_failed")  # a verdict on the patch, not the machine


def _tests_pass(workspace: Workspace, ref: Reference, output: str, label: str) -> dict[str, float]:
    """`tests_pass` of an execute-code output on a verified task: its patch applied onto
    the parent plus the task's tests and graded in the sandbox (1 when resolved). Empty
    where the task is not verified or grading failed for a reason that is not the patch."""
    if not ref.verified or ref.task_id is None:
        return {}
    patch = extract_patch(output)
    if patch is None:
        return {"tests_pass": 0.0}
    try:
        grade = grade_patch(workspace, ref.task_id, patch, label=label)
    except CraError:
        return {}  # no sandbox or no environment here: nothing is known about the patch
    return {"tests_pass": float(grade.verdict == "resolved")} if grade.verdict in GRADED else {}


def _in_process(version: Version, max_new_tokens: int) -> Generate:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet()
    base = Path(version.base_model)
    tokenizer: Any = AutoTokenizer.from_pretrained(base, local_files_only=True)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if version.hyperparams.get("quantization") == "nf4-4bit":
        # Score the weights the adapter was trained against: the same 4-bit NF4 base.
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float32,
            bnb_4bit_use_double_quant=True,
        )
    plain_model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, **kwargs)
    model: Any = PeftModel.from_pretrained(plain_model, version.path).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def run(ids: Any) -> str:
        out = model.generate(
            ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=end,
            pad_token_id=tokenizer.pad_token_id,
        )
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()

    def generate(messages: list[dict[str, Any]]) -> tuple[str, str]:
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        with torch.no_grad():
            tuned = run(ids)
            with model.disable_adapter():
                plain = run(ids)
        return tuned, plain

    return generate


def _served(
    workspace: Workspace, version: Version, max_new_tokens: int, state: ServeState
) -> Generate:
    client = LLMClient(endpoint=state.base_url, model=state.served_model, conn=None)

    def generate(messages: list[dict[str, Any]]) -> tuple[str, str]:
        out = []
        for model in (version.ref, state.served_model):
            done = client.complete(
                stage="eval",
                messages=messages,
                model=model,
                temperature=0.0,
                max_tokens=max_new_tokens,
            )
            out.append((done.text or "").strip())
        return out[0], out[1]

    return generate


def _score_rows(
    workspace: Workspace,
    version: Version,
    pairs: list[tuple[dict[str, Any], Any]],
    generate: Generate,
    progress: Progress | None,
) -> tuple[list[dict[str, float]], list[dict[str, float]], list[dict[str, Any]]]:
    """Generate for each (row, reference) with the version and the base; score both;
    keep the first five outputs as samples."""
    name = version.name
    tuned_scores: list[dict[str, float]] = []
    base_scores: list[dict[str, float]] = []
    samples: list[dict[str, Any]] = []
    for i, (row, reference) in enumerate(pairs, start=1):
        tuned, plain = generate(row["prompt"])
        tuned_scores.append(score_output(name, tuned, reference))
        base_scores.append(score_output(name, plain, reference))
        if name == "execute-code":
            tuned_scores[-1].update(_tests_pass(workspace, reference, tuned, version.ref))
            base_scores[-1].update(_tests_pass(workspace, reference, plain, "base model"))
        if len(samples) < 5:
            samples.append(
                {
                    "task_id": row["meta"].get("task_id"),
                    "output": tuned[:500],
                    "base_output": plain[:500],
                    "reference": reference.text[:500],
                }
            )
        if progress:
            progress(i, len(pairs))
    return tuned_scores, base_scores, samples


def evaluate(
    workspace: Workspace,
    ref: str,
    *,
    dataset_id: str | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate `NAME@vN` on the eval split of `dataset_id` (default: the dataset it was
    trained on), store the result on the version and return it."""
    name, number = parse_versioned(ref)
    with closing(workspace.raw_db()) as conn:
        version = get_version(conn, workspace.root, name, number)
        verify_files(version)
        if version.kind == "ranker":
            return evaluate_ranker(
                workspace, version, dataset_id=dataset_id, limit=limit, progress=progress
            )
        chosen = dataset_id or version.dataset_id
        if not chosen:
            raise UsageError(f"{version.ref} has no dataset", hint="pass --dataset ID")
        dataset = get_dataset(conn, workspace.root, chosen)
        rows = read_rows(dataset, "eval", adapter=name, method=None)
        sft = [r for r in rows if r["meta"].get("technique") == "sft"]
        rows = sft or rows  # one reference per prompt: prefer SFT rows, else DPO chosen
        if limit is not None:
            rows = rows[:limit]
        if not rows:
            raise UsageError(f"dataset {dataset.id} has no eval rows for adapter {name!r}")
        references = [_reference(conn, workspace.root, r) for r in rows]
    max_new = max_new_tokens or workspace.config.settings.adapters.max_new_tokens
    state = running_state(workspace.serve_state_path)
    loaded_here = False
    if state is not None:
        check_compatible(version.served(), state)
        if version.ref not in state.loaded:
            load_version(state, version.served())
            loaded_here = True
        generate, backend = _served(workspace, version, max_new, state), "vllm"
    else:
        generate, backend = _in_process(version, max_new), "transformers+peft"
    try:
        tuned_scores, base_scores, samples = _score_rows(
            workspace, version, list(zip(rows, references, strict=True)), generate, progress
        )
    finally:
        if loaded_here and state is not None:
            unload_version(state, version.ref)
    keys = sorted({k for s in tuned_scores for k in s})
    result = {
        "dataset_id": dataset.id,
        "holdout": dataset.holdout_key(),
        "n": len(rows),
        "backend": backend,
        "primary": list(primary_metrics(name)),
        "metrics": mean_metrics(tuned_scores),
        "base_metrics": mean_metrics(base_scores),
        "per_example": {k: [s.get(k, 0.0) for s in tuned_scores] for k in keys},
        "base_per_example": {k: [s.get(k, 0.0) for s in base_scores] for k in keys},
        "samples": samples,
        "evaluated_at": now_iso(),
    }
    store_eval(workspace, name, version.version, dataset.holdout_key(), result)
    return result
