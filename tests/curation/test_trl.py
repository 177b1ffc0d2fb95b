"""The curated JSONL loads with `datasets` and trains with trl as it is: a few SFT and
DPO steps on the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cra.curation.curate import curate, load_rows
from cra.curation.plan import build_plan, write_plan

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")


@pytest.mark.slow
def test_sft_and_dpo_train_on_the_files(make_log, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The curated files load as datasets that TRL's SFT and DPO trainers train on."""
    ws, _ = make_log(tasks_per_repo=6)
    plan = write_plan(ws.planning_dir, build_plan(ws), ws.planning_dir / "p.json")
    result = curate(ws, plan, "d1")
    files = {s: str(result.path / f"{s}.jsonl") for s in ("train", "eval")}
    data = datasets.load_dataset("json", data_files=files)
    assert data["train"].num_rows == result.card["counts"]["train"]["rows"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)

    def rows(adapter: str, technique: str):
        # Select by meta, then keep the technique's columns: the file holds both shapes.
        picked = data["train"].filter(
            lambda r: r["meta"]["adapter"] == adapter and r["meta"]["technique"] == technique
        )
        columns = (
            ["prompt", "completion"] if technique == "sft" else ["prompt", "chosen", "rejected"]
        )
        return picked.select_columns(columns)

    sft = rows("scope", "sft")
    assert sft.num_rows > 0
    common = dict(
        max_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        max_length=4096,
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = trl.SFTTrainer(
        model=model,
        args=trl.SFTConfig(output_dir=str(tmp_path / "sft"), **common),
        train_dataset=sft,
        processing_class=tokenizer,
    )
    # Prompt-completion rows: the loss covers the completion only.
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labelled = (batch["labels"] != -100).sum().item()
    assert 0 < labelled < batch["input_ids"].shape[1]
    out = trainer.train()
    assert math.isfinite(out.training_loss) and out.global_step == 2

    dpo = rows("planning", "dpo")
    assert dpo.num_rows > 0
    assert load_rows(result.path, "train", "planning", "dpo").to_list() == dpo.to_list()
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = trl.DPOTrainer(
        model=model,
        args=trl.DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
        train_dataset=dpo,
        processing_class=tokenizer,
    )
    out = trainer.train()
    assert math.isfinite(out.training_loss) and out.global_step == 2
