"""`cra train` on CPU with the tiny model and a 4-bit NF4 base: SFT and DPO learn a
memorisable toy set, the adapter is a standard PEFT directory registered as a candidate,
the end-of-turn mask check stops a bad template, and an interrupted run leaves nothing."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.adapters.registry import list_versions
from cra.artefacts import LORA_TARGETS, model_hashes
from cra.cli import cli
from cra.db.train_steps import train_steps
from cra.errors import NotFound, UsageError
from cra.fixtures.datasets import toy_rows, write_dataset
from cra.training.backends import select_backend
from cra.training.mask import MaskError, check_completion_masks
from cra.training.train import TrainOptions, train_adapter
from cra.workspace import Workspace, init_workspace, open_workspace

pytest.importorskip("trl", reason="the train extra is not installed")


@pytest.fixture(scope="session")
def trainable_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a wide enough initializer for LoRA to memorise answers."""
    from cra.fixtures.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("trainable") / "qwen2", init_std=0.2)


def make_workspace(root: Path, base: Path, extra: str = "") -> Workspace:
    init_workspace(root)
    (root / "cra.toml").write_text(
        f'[model]\nbase = "{base}"\n[train]\nbatch_size = 6\nlearning_rate = 0.005\n'
        f"dpo_learning_rate = 0.001\n{extra}[adapters]\nmax_new_tokens = 16\n"
    )
    workspace = open_workspace(root)
    write_dataset(workspace)
    return workspace


@pytest.fixture(scope="module")
def trained(trainable_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """A workspace where scope@v1 was trained with SFT for 24 steps."""
    workspace = make_workspace(tmp_path_factory.mktemp("trained") / "ws", trainable_model)
    steps: list[tuple[int, int]] = []
    result = train_adapter(
        workspace,
        TrainOptions("toy-1", "scope", max_steps=24),
        progress=lambda done, total: steps.append((done, total)),
    )
    return workspace, result, steps


def test_sft_loss_goes_down_and_the_version_is_registered_with_its_provenance(trained) -> None:
    """SFT lowers the loss and registers a LoRA candidate version with its provenance."""
    workspace, result, steps = trained
    metrics = result.metrics
    assert result.backend == "peft"  # no CUDA here
    assert metrics["steps"] == 24 and len(metrics["losses"]) == 24
    assert metrics["last_loss"] < metrics["first_loss"] / 4  # memorised the toy set
    assert metrics["tokens"] > 0 and metrics["tokens_per_s"] > 0
    assert steps[-1] == (24, 24)  # the progress bar saw every step
    version = result.version
    assert version.ref == "scope@v1" and version.status == "candidate"
    assert version.path == workspace.adapters_dir / "scope" / "v1"
    config = json.loads((version.path / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(LORA_TARGETS)
    assert not config.get("modules_to_save")
    assert config["r"] == 16 and config["lora_alpha"] == 32
    base_hash, tokenizer_hash = model_hashes(Path(workspace.config.settings.model.base))
    assert (version.base_model_hash, version.tokenizer_hash) == (base_hash, tokenizer_hash)
    assert version.dataset_id == "toy-1" and version.hyperparams["quantization"] == "nf4-4bit"
    assert "adapter_model.safetensors" in version.files_sha256
    meta = json.loads((version.path / "meta.json").read_text())
    assert meta["files_sha256"] == version.files_sha256
    assert meta["lineage"]["dataset"] == "toy-1" and meta["train_metrics"]["steps"] == 24
    # nothing left in the staging area
    assert not any((workspace.training_dir / "runs").iterdir())


def test_saved_adapter_loads_with_peft_and_changes_the_logits(trained) -> None:
    """The saved adapter loads with PEFT and changes the base model's output."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workspace, result, _ = trained
    base = Path(workspace.config.settings.model.base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = tokenizer.apply_chat_template(
        toy_rows()[0]["prompt"],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        plain = model(ids).logits
        tuned_model = PeftModel.from_pretrained(model, result.version.path)
        tuned = tuned_model(ids).logits
        answer = tokenizer.decode(
            tuned_model.generate(
                ids,
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            )[0, ids.shape[1] :],
            skip_special_tokens=True,
        )
    assert (tuned - plain).abs().max().item() > 1.0
    assert answer.strip() == "src/tally/stats.py"


def test_dpo_trains_from_the_frozen_base_and_registers_the_next_version(trained) -> None:
    """DPO uses the frozen base as reference, lowers its loss and registers the next version."""
    workspace, _, _ = trained
    result = train_adapter(workspace, TrainOptions("toy-1", "scope", method="dpo", max_steps=5))
    losses = result.metrics["losses"]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy == reference at start
    assert losses[-1] < losses[0]
    assert result.version.ref == "scope@v2" and result.version.method == "dpo"
    assert result.version.hyperparams["dpo_beta"] == 0.1
    with closing(workspace.raw_db()) as conn:
        steps = train_steps(conn, "scope", 2)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5] and {s.method for s in steps} == {"dpo"}
    assert [s.loss for s in steps] == pytest.approx(losses)
    assert all(s.reward_margin is not None for s in steps)


def test_every_logging_step_is_recorded_and_keyed_to_the_registered_version(trained) -> None:
    """Each of the 24 SFT logging steps is a train_steps row of scope@v1 with its loss,
    learning rate, grad norm, epoch and token throughput."""
    workspace, result, _ = trained
    with closing(workspace.raw_db()) as conn:
        steps = train_steps(conn, "scope", 1)
    assert [s.step for s in steps] == list(range(1, 25))
    assert [s.loss for s in steps] == pytest.approx(result.metrics["losses"])
    assert [s.learning_rate for s in steps] == pytest.approx([0.005] * 24)  # constant
    assert all(s.grad_norm is not None and s.grad_norm >= 0 for s in steps)
    assert [s.epoch for s in steps] == sorted(s.epoch for s in steps if s.epoch is not None)
    assert all(s.tokens_per_s is not None and s.tokens_per_s > 0 for s in steps)
    assert len({s.run_id for s in steps}) == 1 and steps[0].run_id.startswith("scope-")


def _template_without_end(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    template = (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    config["chat_template"] = template
    config_path.write_text(json.dumps(config))
    jinja = target / "chat_template.jinja"
    if jinja.exists():
        jinja.write_text(template)
    return target


def test_mask_check_catches_a_template_that_drops_the_end_of_turn_token(
    trainable_model: Path, tmp_path: Path
) -> None:
    """Training refuses a chat template whose completion mask drops the end-of-turn token."""
    from transformers import AutoTokenizer

    good = AutoTokenizer.from_pretrained(trainable_model)
    rows = [r for r in toy_rows() if r["meta"]["technique"] == "sft"]
    assert check_completion_masks(good, rows) == len(rows)
    bad_dir = _template_without_end(trainable_model, tmp_path / "bad-model")
    bad = AutoTokenizer.from_pretrained(bad_dir)
    with pytest.raises(MaskError, match="row 1: the completion mask ends with"):
        check_completion_masks(bad, rows)
    dpo = [r for r in toy_rows() if r["meta"]["technique"] == "dpo"]
    with pytest.raises(MaskError, match="chosen"):
        check_completion_masks(bad, dpo)
    workspace = make_workspace(tmp_path / "ws", bad_dir)
    with pytest.raises(MaskError):
        train_adapter(workspace, TrainOptions("toy-1", "scope", max_steps=2))
    with closing(workspace.raw_db()) as conn:
        assert list_versions(conn, workspace.root) == []


def test_ctrl_c_during_training_leaves_no_version(trainable_model: Path, tmp_path: Path) -> None:
    """Ctrl-C during training leaves no version, no event, no adapter files and no run folder."""
    workspace = make_workspace(tmp_path / "ws", trainable_model)

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(workspace, TrainOptions("toy-1", "scope", max_steps=5), progress=interrupt)
    with closing(workspace.raw_db()) as conn:
        assert list_versions(conn, workspace.root) == []
        assert conn.execute("SELECT count(*) FROM adapter_events").fetchone()[0] == 0
    assert not (workspace.adapters_dir / "scope").exists() or not any(
        (workspace.adapters_dir / "scope").iterdir()
    )
    assert not any((workspace.training_dir / "runs").iterdir())


def test_bad_input_is_refused_before_loading_anything(trained) -> None:
    """A missing dataset, an adapter without rows or bad options are refused before any loading."""
    workspace, _, _ = trained
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        train_adapter(workspace, TrainOptions("nope", "scope"))
    with pytest.raises(UsageError, match="no sft rows for adapter 'planning'"):
        train_adapter(workspace, TrainOptions("toy-1", "planning"))
    with pytest.raises(UsageError, match="invalid adapter name"):
        TrainOptions("toy-1", "Scope@v1")
    with pytest.raises(UsageError, match="--max-steps"):
        TrainOptions("toy-1", "scope", max_steps=0)


def test_rows_longer_than_max_length_are_left_out_not_cut(
    trainable_model: Path, tmp_path: Path
) -> None:
    """Rows longer than max_length are left out, never cut; if none is left, training refuses."""
    workspace = make_workspace(tmp_path / "ws", trainable_model, "max_length = 8\n")
    with pytest.raises(UsageError, match="every row is longer than max_length 8 tokens"):
        train_adapter(workspace, TrainOptions("toy-1", "scope", max_steps=1))


def test_unsloth_is_selected_only_with_cuda() -> None:
    """Without CUDA the auto backend is PEFT and asking for Unsloth is a usage error."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert select_backend("auto") == "peft"
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        select_backend("unsloth")


def test_cli_trains_evaluates_promotes_and_rolls_back(trained) -> None:
    """The CLI trains, evaluates and promotes, refuses a weaker retrain, and shows the lineage."""
    workspace, _, _ = trained
    runner = CliRunner()

    def cra(*args: str) -> str:
        out = runner.invoke(cli, ["-w", str(workspace.root), *args], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return out.stdout

    evaluated = json.loads(cra("adapter", "eval", "scope@v1", "--json"))
    assert evaluated["backend"] == "transformers+peft" and evaluated["n"] == 6
    assert evaluated["metrics"]["file_recall"] == 1.0  # memorised holdout answers
    assert evaluated["base_metrics"]["file_recall"] == 0.0
    assert "scope@v1 is active (was no active version)" in cra("adapter", "promote", "scope@v1")
    trained_json = json.loads(
        cra(
            "train",
            "--dataset",
            "toy-1",
            "--adapter",
            "scope",
            "--max-steps",
            "1",
            "--learning-rate",
            "0.00001",
            "--json",
        )
    )
    weak = trained_json["ref"]
    cra("adapter", "eval", weak)
    refused = runner.invoke(cli, ["-w", str(workspace.root), "adapter", "promote", weak])
    assert refused.exit_code == 1 and "regresses against scope@v1" in refused.output
    listed = {v["ref"]: v["status"] for v in json.loads(cra("adapter", "list", "--json"))}
    assert listed["scope@v1"] == "active" and listed[weak] == "rejected"
    shown = cra("adapter", "show", "scope")
    assert "lineage: dataset toy-1" in shown and "rejected" in shown and "promoted" in shown
