"""`cra train --adapter scope-ranker --dataset ID` trains on a curated dataset's ranker
rows, records every step in `train_steps` stamped with the version it registers, and the
plan then measures the ranker by its evaluated recall."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.adapters.evaluate import evaluate
from cra.adapters.lifecycle import promote
from cra.cli import cli
from cra.curation.curate import curate
from cra.curation.plan import build_plan, write_plan
from cra.curation.ranker import ranker_metric
from cra.db.log_metrics import StageMetrics
from cra.db.train_steps import train_steps
from cra.ranker.train import RankerTrainOptions, train_ranker
from cra.workspace import Workspace
from tests.curation.helpers import ranker_plan_workspace

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")


@pytest.fixture
def encoder(tmp_path: Path) -> Path:
    """The tiny random encoder."""
    from cra.fixtures.ranker import build_tiny_encoder

    return build_tiny_encoder(tmp_path / "tiny")


def test_a_curated_dataset_trains_the_ranker_and_records_its_steps(
    workspace: Workspace, encoder: Path
) -> None:
    """The CLI trains from the dataset's train rows only; each step (step, epoch, loss,
    learning rate) is in train_steps, keyed to one run and stamped with v1."""
    ws = ranker_plan_workspace(workspace)
    curate(ws, write_plan(ws.planning_dir, build_plan(ws)), "rk-1")
    args = ["train", "--adapter", "scope-ranker", "--dataset", "rk-1", "--base", str(encoder)]
    result = CliRunner().invoke(cli, [*args, "--epochs", "2", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    version = json.loads(result.output[result.output.index("{") :])
    assert version["ref"] == "scope-ranker@v1" and version["dataset_id"] == "rk-1"
    metrics = version["train_metrics"]
    with closing(ws.raw_db()) as conn:
        steps = train_steps(conn, "scope-ranker")
    assert [s.step for s in steps] == list(range(1, metrics["steps"] + 1))
    assert [s.loss for s in steps] == metrics["losses"]
    assert {s.version for s in steps} == {1} and len({s.run_id for s in steps}) == 1
    rate = version["hyperparams"]["learning_rate"]
    assert all(s.learning_rate == rate and s.epoch and s.method == version["method"] for s in steps)
    assert steps[-1].epoch == pytest.approx(2.0, abs=0.5)


def test_the_plan_reads_the_rankers_evaluated_recall(workspace: Workspace, encoder: Path) -> None:
    """Before promotion the plan measures BM25's recall@5 on the ranker's holdout; once
    promoted, the active version's own."""
    ws = ranker_plan_workspace(workspace)
    curate(ws, write_plan(ws.planning_dir, build_plan(ws)), "rk-1")
    ref = train_ranker(
        ws, RankerTrainOptions(dataset_id="rk-1", base=encoder, epochs=4)
    ).version.ref
    report = evaluate(ws, ref)
    scope = StageMetrics("scope", "file_recall", 3, 0.1, (), ())
    with closing(ws.raw_db()) as conn:
        before = ranker_metric(conn, ws.root, scope)
    assert before.mean == report["bm25_metrics"]["recall@5"] and before.n == report["n"] == 8
    assert before.metric == "recall@5 of bm25"
    promote(ws, ref, force=True)
    with closing(ws.raw_db()) as conn:
        after = ranker_metric(conn, ws.root, scope)
    assert after.mean == report["metrics"]["recall@5"] and after.metric == f"recall@5 of {ref}"
