"""The scope ranker: trained on a synthetic history it beats BM25 on the chronological
holdout, registers as a `ranker` version with its files' checksums, promotes through the
gate and rolls back; bad input is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.adapters.evaluate import evaluate
from cra.adapters.lifecycle import promote, rollback
from cra.cli import cli
from cra.errors import UsageError
from cra.ranker.base import ranker_base_dir
from cra.ranker.history import Candidate
from cra.ranker.model import load_active_ranker
from cra.ranker.train import RankerTrainOptions, train_ranker
from tests.ranker.helpers import ranker_workspace

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random encoder, built once."""
    from cra.fixtures.ranker import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny")


@pytest.fixture(scope="module")
def trained(encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    """A workspace with the synthetic history and scope-ranker@v1 trained on it."""
    from cra.fixtures.ranker import build_ranker_history

    workspace = ranker_workspace(tmp_path_factory.mktemp("trained") / "ws", encoder)
    build_ranker_history(workspace, commits=60)
    return workspace, train_ranker(workspace, RankerTrainOptions())


def test_training_registers_a_ranker_version_with_losses_and_checksums(trained) -> None:
    """The version is a candidate of kind ranker with its encoder, weight, per-step
    losses and the sha256 of every file."""
    _, result = trained
    version = result.version
    assert (version.ref, version.status, version.kind) == ("scope-ranker@v1", "candidate", "ranker")
    assert "encoder/model.safetensors" in version.files_sha256
    assert "ranker.json" in version.files_sha256
    losses = version.train_metrics["losses"]
    assert len(losses) == version.train_metrics["steps"] > 1
    assert losses[-1] < losses[0]
    meta = json.loads((version.path / "meta.json").read_text())
    assert meta["kind"] == "ranker" and meta["lineage"]["source"] == "mined history"
    assert 0.0 <= json.loads((version.path / "ranker.json").read_text())["weight"] <= 1.0


def test_the_ranker_beats_bm25_and_the_prior_on_the_holdout_and_promotes(trained) -> None:
    """Where the changed file is never named in the message, the trained ranker's MRR and
    recall@1 on the newest 20% exceed BM25's and the frequency prior's; the gate lets it
    through, the pointer moves, and rollback moves it back."""
    workspace, result = trained
    report = evaluate(workspace, result.version.ref)
    assert report["n"] == 12
    assert report["metrics"]["mrr"] > report["bm25_metrics"]["mrr"] + 0.2
    assert report["metrics"]["recall@1"] > report["prior_metrics"]["recall@1"]
    assert set(report["metrics"]) == {"recall@1", "recall@5", "recall@10", "mrr"}
    move = promote(workspace, result.version.ref)
    assert move.action == "promoted" and move.to_version == 1
    ranker = load_active_ranker(workspace)
    assert ranker is not None
    cands = [
        Candidate("pkg/alpha.py", "", "pkg/alpha.py (pkg alpha)\ndef render(value)", 0.0),
        Candidate("pkg/beta.py", "", "pkg/beta.py (pkg beta)\ndef compute(value)", 0.0),
    ]
    ranked = ranker.rerank("Fix the colour handling", cands)
    assert [s.path for s in ranked] == ["pkg/alpha.py", "pkg/beta.py"]
    back = rollback(workspace, "scope-ranker")
    assert back.to_version is None and load_active_ranker(workspace) is None


def test_training_is_deterministic(encoder: Path, tmp_path: Path) -> None:
    """Two runs with the same seed on the same history log the same losses."""
    from cra.fixtures.ranker import build_ranker_history

    losses = []
    for name in ("a", "b"):
        workspace = ranker_workspace(tmp_path / name, encoder)
        build_ranker_history(workspace, commits=20)
        result = train_ranker(workspace, RankerTrainOptions(max_steps=3))
        losses.append(result.metrics["losses"])
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_no_mined_commits_is_a_one_line_error(encoder: Path, tmp_path: Path) -> None:
    """A workspace with no repository, or none with qualifying commits, says so."""
    workspace = ranker_workspace(tmp_path / "ws", encoder)
    with pytest.raises(UsageError, match="no repositories to train a ranker on"):
        train_ranker(workspace, RankerTrainOptions())


def test_commits_without_gold_files_give_no_rows(encoder: Path, tmp_path: Path) -> None:
    """Commits whose changed files are not in their parent leave no row: an error."""
    from cra.fixtures.ranker import build_ranker_history

    workspace = ranker_workspace(tmp_path / "ws", encoder)
    build_ranker_history(workspace, commits=3)
    with workspace.raw_db() as conn:
        conn.execute("UPDATE commits SET files_source = '[\"pkg/new.py\"]'")
    with pytest.raises(UsageError, match="no ranker rows"):
        train_ranker(workspace, RankerTrainOptions())


def test_a_missing_base_directory_is_a_one_line_error(tmp_path: Path) -> None:
    """`[ranker] base` naming no directory fails before any work, through the CLI too."""
    with pytest.raises(UsageError, match="does not exist"):
        ranker_base_dir(str(tmp_path / "nowhere"), tmp_path)
    ranker_workspace(tmp_path / "ws", tmp_path / "nowhere")
    out = CliRunner().invoke(
        cli, ["-w", str(tmp_path / "ws"), "train", "--adapter", "scope-ranker"]
    )
    assert out.exit_code != 0
    assert "does not exist" in out.output and "Traceback" not in out.output
