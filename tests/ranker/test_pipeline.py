"""The scope ranker in the pipeline: with `[retrieve] ranker = "learned"`, `cra harness run`
reranks each task's files with the active version and records it in `retrievals`, the
baseline planner plans from the reranked files, a rollback falls back to BM25 (said once
on stderr), and `cra adapter check` scores the version's retrievals live and rolls back
on a regression."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.adapters.evaluate import evaluate
from cra.adapters.lifecycle import check, promote, rollback
from cra.adapters.live import live_scores
from cra.adapters.registry import events
from cra.cli import cli
from cra.harness.rerank import RankedFile, files_first
from cra.harness.retrieve import Hit
from cra.ranker.train import RankerTrainOptions, train_ranker
from cra.workspace import Workspace, init_workspace
from tests.ranker.helpers import (
    copy_workspace,
    plant_missing_gold,
    ranker_workspace,
    retrieval_rows,
)

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")

LIMIT = 8


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace folder with the synthetic history and scope-ranker@v1 trained,
    evaluated and promoted (built once; tests work on copies)."""
    from cra.fixtures.ranker import build_ranker_history, build_tiny_encoder

    encoder = build_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny")
    workspace = ranker_workspace(tmp_path_factory.mktemp("promoted") / "ws", encoder)
    build_ranker_history(workspace, commits=60)
    version = train_ranker(workspace, RankerTrainOptions()).version
    evaluate(workspace, version.ref)
    promote(workspace, version.ref)
    return workspace.root


def _plan(workspace: Workspace, *extra: str) -> tuple[dict, str]:
    """`cra harness run --repo toy` without validation; (its JSON summary, its stderr)."""
    args = ["-w", str(workspace.root), "harness", "run", "--repo", "toy", "--no-validate"]
    out = CliRunner().invoke(cli, [*args, "--limit", str(LIMIT), "--json", *extra])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout), out.stderr


def _first_files(workspace: Workspace) -> dict[str, str]:
    """The first file of each task's baseline plan."""
    with closing(workspace.raw_db()) as conn:
        rows = conn.execute("SELECT task_id, plan FROM plans WHERE planner = 'baseline'")
        return {t: json.loads(p)["steps"][0]["file"] for t, p in rows.fetchall()}


def _file_recall(workspace: Workspace) -> float:
    """The mean file recall of the recorded plans."""
    with closing(workspace.raw_db()) as conn:
        return conn.execute("SELECT avg(file_recall) FROM plan_scores").fetchone()[0]


def test_the_harness_reranks_with_the_active_version_and_plans_from_it(
    promoted: Path, workspace: Workspace, tmp_path: Path
) -> None:
    """Each retrieval records method learned and scope-ranker v1 with its ranked files,
    each plan starts at the ranker's first file, and the plans' file recall beats the
    same tasks planned from BM25 alone (the messages never name the file)."""
    learned = copy_workspace(promoted, workspace, "learned")
    summary, stderr = _plan(learned)
    assert summary["tasks_done"] == LIMIT and summary["retrieval"] == "scope-ranker@v1"
    assert stderr == ""
    rows = retrieval_rows(learned)
    assert [(m, a, v) for _, m, a, v, _ in rows] == [("learned", "scope-ranker", 1)] * LIMIT
    firsts = _first_files(learned)
    for task_id, _, _, _, files in rows:
        ranked = json.loads(files)
        assert len(ranked) == 6 and firsts[task_id] == ranked[0]["path"]
        assert ranked[0]["score"] >= ranked[-1]["score"]
    bm25 = copy_workspace(promoted, init_workspace(tmp_path / "bm25").workspace, "bm25")
    summary, _ = _plan(bm25)
    assert summary["retrieval"] == "bm25"
    assert {(m, a, v, f) for _, m, a, v, f in retrieval_rows(bm25)} == {("bm25", None, None, None)}
    assert _file_recall(learned) > _file_recall(bm25) + 0.3


def test_after_a_rollback_the_harness_falls_back_to_bm25_and_says_so(
    promoted: Path, workspace: Workspace
) -> None:
    """With no active version the run retrieves with BM25, records method bm25 and no
    version, and says so once on stderr."""
    learned = copy_workspace(promoted, workspace, "learned")
    rollback(learned, "scope-ranker")
    summary, stderr = _plan(learned)
    assert summary["tasks_done"] == LIMIT and summary["retrieval"] == "bm25"
    assert stderr.count("no active version") == 1 and "using BM25" in stderr
    assert {r[1:] for r in retrieval_rows(learned)} == {("bm25", None, None, None)}


def test_adapter_check_scores_live_recall_and_rolls_back_on_a_planted_regression(
    promoted: Path, workspace: Workspace
) -> None:
    """Live recall of the retrievals v1 served holds up (no rollback); retrievals that rank
    every gold file last drag recall@5 and MRR below the promoted ones beyond the noise
    floor, and the check rolls v1 back, recorded as an automatic rollback."""
    learned = copy_workspace(promoted, workspace, "learned")
    _plan(learned)
    with closing(learned.raw_db()) as conn:
        live = live_scores(conn, "scope-ranker", 1, repos_dir=learned.repos_dir)
    assert len(live) == LIMIT and sum(s["recall@5"] for s in live) / LIMIT > 0.9
    said: list[str] = []
    assert check(learned, "scope-ranker", echo=said.append) is None
    assert any("recall@5: live" in line for line in said)
    assert plant_missing_gold(learned, "scope-ranker", 1, copies=3) == 3 * LIMIT
    move = check(learned, "scope-ranker")
    assert move is not None and move.action == "rolled_back" and move.to_version is None
    assert set(move.details["regressions"]) == {"recall@5", "mrr"}
    with closing(learned.raw_db()) as conn:
        last = events(conn, "scope-ranker")[-1]
    assert last.event == "rolled_back" and last.details["automatic"] is True
    assert last.reason.startswith("automatic: live recall@5")
    out = CliRunner().invoke(cli, ["-w", str(learned.root), "adapter", "check", "scope-ranker"])
    assert out.exit_code == 0 and "no active version" in out.output


def test_files_first_puts_the_rankers_files_first_with_their_own_hits() -> None:
    """BM25's hits regroup in the ranker's file order; a file BM25 missed enters as a file
    hit; at most k hits and a quarter of them per file."""
    hits = [Hit("a.py", f"f{i}", "function", 9.0 - i) for i in range(6)] + [
        Hit("b.py", "g", "function", 1.0)
    ]
    files = [RankedFile(p, s, s, 0.0) for p, s in (("c.py", 0.9), ("b.py", 0.5), ("a.py", 0.1))]
    out = files_first(hits, files, k=8)
    assert [(h.file, h.symbol) for h in out] == [
        ("c.py", None),
        ("b.py", "g"),
        ("a.py", "f0"),
        ("a.py", "f1"),
    ]
    with pytest.raises(ValueError, match="k must be"):
        files_first(hits, files, k=0)
