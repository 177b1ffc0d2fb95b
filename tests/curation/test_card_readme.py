"""The dataset README is a Hugging Face dataset card: Hub metadata a loader can read."""

from __future__ import annotations

import pytest

from cra.curation.curate import curate
from cra.curation.plan import build_plan, write_plan
from cra.fsutil import sha256_file


def test_dataset_readme_carries_hub_card_metadata_and_file_hashes(make_log) -> None:
    """README.md front matter: license, task, configs with both data files, split row
    counts; its body lists every data file's sha256."""
    repocard = pytest.importorskip("huggingface_hub.repocard", reason="the train extra")
    ws, _log = make_log(tasks_per_repo=6)
    plan_path = write_plan(ws.planning_dir, build_plan(ws), ws.planning_dir / "p.json")
    result = curate(ws, plan_path, "d1")
    card = repocard.DatasetCard.load(result.path / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "other"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "train.jsonl"},
                {"split": "eval", "path": "eval.jsonl"},
            ],
        }
    ]
    rows = {
        name: len((result.path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines())
        for name in ("train", "eval")
    }
    splits = {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]}
    assert splits == rows
    for name in ("train.jsonl", "eval.jsonl", "card.json"):
        assert f"| {name} | `{sha256_file(result.path / name)}` |" in card.text
