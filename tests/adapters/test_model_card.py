"""Each adapter version carries a PEFT-style model card that tells what it is, and the
card never changes the version's identity."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from cra.adapters.registry import get_version, verify_files
from cra.fixtures.datasets import write_dataset
from cra.workspace import Workspace, open_workspace
from tests.adapters.helpers import candidate, planted_eval


@pytest.fixture
def ws(workspace: Workspace, tiny_model_dir: Path) -> Workspace:
    (workspace.root / "cra.toml").write_text(f'[model]\nbase = "{tiny_model_dir}"\n')
    workspace = open_workspace(workspace.root)
    write_dataset(workspace)
    return workspace


def test_registered_version_has_a_peft_card_outside_its_checksums(ws: Workspace, tmp_path: Path):
    """Registration writes README.md with base_model, library_name: peft and the dataset;
    the card is not among the checksummed files, and the file check still passes."""
    number = candidate(ws, tmp_path, seed=1)
    with closing(ws.raw_db()) as conn:
        version = get_version(conn, ws.root, "scope", number)
    card = ModelCard.load(version.path / "README.md")
    assert card.data.library_name == "peft"
    assert card.data.base_model == Path(ws.config.settings.model.base).name
    assert card.data.datasets == ["toy-1"]
    assert "README.md" not in version.files_sha256
    assert all(digest in card.text for digest in version.files_sha256.values())
    verify_files(version)


def test_evaluation_rewrites_the_card_with_its_metrics(ws: Workspace, tmp_path: Path):
    """After an eval is stored the card lists the holdout and its metrics, and the
    version's files still match their checksums."""
    number = candidate(ws, tmp_path, seed=2)
    planted_eval(ws, number, [1.0, 0.5])
    with closing(ws.raw_db()) as conn:
        version = get_version(conn, ws.root, "scope", number)
    text = (version.path / "README.md").read_text(encoding="utf-8")
    assert "Holdout `toy-1:" in text and "| file_recall | 0.75 |" in text
    verify_files(version)
