"""The recency prior, the ranker's third signal: its scores, how training chooses a mix
with it, how a version saves it, and that the harness feeds it only earlier commits."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from cra.db.commits import qualified_commits
from cra.db.repos import repo_id
from cra.db.tasks import task_id_for
from cra.harness.planning import RunOptions
from cra.harness.run import EarlierChanges, run_harness
from cra.ranker.evaluate import Scoring, choose_mix
from cra.ranker.model import RANKER_JSON, Mix, Ranker, load_ranker
from cra.ranker.pipeline import SnapshotRanker
from cra.ranker.prior import HALF_LIVES, recency
from cra.ranker_rows import RankerRow
from tests.ranker.helpers import ranker_workspace, retrieval_rows

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")


def _row(n: int, gold: str) -> RankerRow:
    return RankerRow(
        f"toy@{n:040d}", "toy", f"task {n}", (gold,), (), "p" * 40, f"{n:04d}", "tested"
    )


def _scoring(n: int, gold: str, paths: tuple[str, ...], recent: str) -> Scoring:
    """A row where BM25 and the encoder are blind (equal scores) and only `recent` was
    changed lately."""
    vector = np.asarray([1.0 if p == recent else 0.0 for p in paths])
    flat = np.zeros(len(paths))
    return Scoring(_row(n, gold), paths, flat, flat, paths, {h: vector for h in HALF_LIVES})


def test_recency_weighs_the_newest_change_most_halving_per_half_life() -> None:
    """The newest earlier commit adds 1 to its files, one `half_life` older adds 0.5."""
    scores = recency([("a.py",), ("b.py", "a.py"), ("c.py",)], half_life=2.0)
    assert scores["c.py"] == pytest.approx(1.0)
    assert scores["b.py"] == pytest.approx(0.5**0.5)
    assert scores["a.py"] == pytest.approx(0.5 + 0.5**0.5)
    assert recency([], 10.0) == {}


def test_training_chooses_the_prior_when_only_recency_finds_the_gold_file() -> None:
    """On rows whose gold file is the one changed lately, the chosen mix weighs the prior."""
    paths = ("a.py", "b.py", "c.py")
    scored = [_scoring(i, "c.py", paths, "c.py") for i in range(6)]
    mix, grid = choose_mix(scored)
    assert mix.prior_weight > 0 and mix.half_life in HALF_LIVES
    assert grid["encoder 0.0, BM25 1.0"] < max(grid.values())


def test_training_leaves_the_prior_out_when_it_does_not_help() -> None:
    """When the lately changed file is never the gold one, no prior is chosen."""
    paths = ("a.py", "b.py", "c.py")
    scored = [_scoring(i, "a.py", paths, "c.py") for i in range(6)]
    mix, _ = choose_mix(scored)
    assert mix == Mix(0.0)


def test_a_version_saves_its_mix_and_an_older_one_loads_without_prior(tmp_path: Path) -> None:
    """`ranker.json` carries the prior's weight and half-life; one written before the
    prior existed loads with none."""
    from cra.fixtures.ranker import build_tiny_encoder

    folder = tmp_path / "version"
    build_tiny_encoder(folder / "encoder")
    config = {"weight": 0.4, "prior_weight": 0.2, "half_life": 10.0, "max_seq_length": 64}
    (folder / RANKER_JSON).write_text(json.dumps(config))
    assert load_ranker(folder).mix == Mix(0.4, 0.2, 10.0)
    del config["prior_weight"], config["half_life"]
    (folder / RANKER_JSON).write_text(json.dumps(config))
    assert load_ranker(folder).mix == Mix(0.4)


def test_the_harness_feeds_the_prior_the_earlier_commits_only(tmp_path: Path) -> None:
    """A prior-only ranker in `run_harness` puts first, for each task, the candidate the
    commits before it changed most recently: nothing later reaches it."""
    from cra.fixtures.ranker import build_ranker_history, build_tiny_encoder
    from cra.ranker.base import load_encoder

    encoder = build_tiny_encoder(tmp_path / "encoder")
    workspace = ranker_workspace(tmp_path / "ws", encoder)
    build_ranker_history(workspace, commits=12)
    ranker = Ranker(load_encoder(encoder), 0.0, prior_weight=1.0, half_life=3.0)
    run_harness(workspace, "toy", RunOptions(), ranker=SnapshotRanker(ranker, "scope-ranker", 1))
    with closing(workspace.raw_db()) as conn:
        rid = repo_id(conn, "toy")
        assert rid is not None
        commits = {task_id_for("toy", c.sha): c for c in qualified_commits(conn, rid, None)}
        earlier = EarlierChanges(conn, rid)
    checked = 0
    for task_id, _method, _adapter, _version, files in retrieval_rows(workspace):
        ranked = json.loads(files)
        before = earlier.before(commits[task_id])
        scores = recency(before, 3.0)
        best = max(scores.get(f["path"], 0.0) for f in ranked)
        assert scores.get(ranked[0]["path"], 0.0) == pytest.approx(best)
        assert ranked[0]["prior"] == (1.0 if best > 0 else 0.0)
        checked += bool(before)
    assert checked >= 10
