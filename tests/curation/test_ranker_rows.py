"""Scope-ranker rows in a curated dataset: every commit past the message and size stages
teaches the ranker (tested or not), under the same time split, dedup and provenance as
every row; the plan ranks the ranker by its gap to `[curate] target_scope_ranker`."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from contextlib import closing
from dataclasses import replace

from cra.curation.candidates import build_candidates
from cra.curation.curate import curate
from cra.curation.plan import PlanSettings, build_plan, plan_from, write_plan
from cra.curation.ranker import GROUP, NO_CLONE, RankerRows, ranker_metric
from cra.curation.steps import Splits
from cra.datasets_store import get_dataset, read_rows
from cra.db.log_metrics import StageMetrics
from cra.db.logs import LogAnalysis
from cra.ranker_rows import read_ranker_rows
from cra.workspace import Workspace
from tests.curation.helpers import ranker_plan_workspace


def _curated(workspace: Workspace) -> tuple[Workspace, dict]:
    ws = ranker_plan_workspace(workspace)
    plan = build_plan(ws)
    result = curate(ws, write_plan(ws.planning_dir, plan), "rk-1")
    return ws, result.card


def test_curate_data_writes_ranker_rows_split_by_time_with_provenance(
    workspace: Workspace,
) -> None:
    """Every ranker row names its task, repo, full commit, authored date, source, domain
    and kind; every eval row is newer than every train row; the rows read back."""
    ws, card = _curated(workspace)
    assert card["counts"]["train"]["by_group"] == {"scope-ranker/ranker": 32}
    assert card["counts"]["eval"]["by_group"] == {"scope-ranker/ranker": 8}
    with closing(ws.raw_db()) as conn:
        dataset = get_dataset(conn, ws.root, "rk-1")
    train, held = read_ranker_rows(dataset, "train"), read_ranker_rows(dataset, "eval")
    assert (len(train), len(held)) == (32, 8)
    assert max(r.authored_at for r in train) < min(r.authored_at for r in held)
    assert not {r.task_id for r in train} & {r.task_id for r in held}
    line = json.loads((dataset.path / "train.jsonl").read_text().splitlines()[0])
    meta = line["meta"]
    assert set(meta) >= {"adapter", "technique", "task_id", "repo", "commit", "authored_at"}
    assert meta["task_id"] == f"toy@{meta['commit'][:12]}" and len(meta["commit"]) == 40
    assert (meta["source"], meta["domain"], meta["technique"]) == ("history", "toy", "ranker")
    assert all(set(r.positives).isdisjoint(r.negatives) and r.negatives for r in train)


def test_commits_without_test_changes_teach_the_ranker_as_untested_rows(
    workspace: Workspace,
) -> None:
    """A commit dropped only at the tests stage gives an `untested` row (10 of the 40
    commits here), a qualifying one a `tested` row; only the ranker takes them."""
    ws, _ = _curated(workspace)
    with closing(ws.raw_db()) as conn:
        dataset = get_dataset(conn, ws.root, "rk-1")
    rows = read_ranker_rows(dataset, "train") + read_ranker_rows(dataset, "eval")
    assert Counter(r.kind for r in rows) == {"tested": 30, "untested": 10}


def test_read_rows_skips_ranker_rows_explicitly(workspace: Workspace) -> None:
    """`read_rows` returns chat rows only: the ranker's rows of a dataset are skipped by
    their technique, not by luck of the adapter name."""
    ws, _ = _curated(workspace)
    with closing(ws.raw_db()) as conn:
        dataset = get_dataset(conn, ws.root, "rk-1")
    assert read_rows(dataset, "train", adapter="scope-ranker", method=None) == []
    assert len(read_ranker_rows(dataset, "train")) == 32


def test_the_ranker_step_counts_commits_it_cannot_read(workspace: Workspace) -> None:
    """Without the repository's clone the step adds no row and counts every commit that
    could have taught the ranker under its reason; with it, `run` adds them pending."""
    ws = ranker_plan_workspace(workspace)
    clone = ws.repos_dir / "toy" / "repo"
    with closing(ws.raw_db()) as raw, closing(ws.curated_db()) as curated:
        step = RankerRows(raw, curated, ws.repos_dir, domains={}, negatives=3)
        splits = step.run(Splits())
        assert len(splits.pending) == 40 and step.kinds == {"tested": 30, "untested": 10}
        assert all(len(r.record["ranker"]["negatives"]) == 3 for r in splits.pending)
        shutil.move(clone, ws.root / "elsewhere")
        blind = RankerRows(raw, curated, ws.repos_dir, domains={}, negatives=3)
        assert blind.build() == []
        assert blind.dropped[NO_CLONE] == 40 and dict(blind.detail[NO_CLONE]) == {"toy": 40}


def test_the_plan_ranks_the_ranker_by_its_gap_to_the_target(workspace: Workspace) -> None:
    """The ranker's weakness is `[curate] target_scope_ranker` minus its measured recall;
    with no evaluated ranker it is measured by the scope stage's logged recall."""
    ws = ranker_plan_workspace(workspace)
    settings = PlanSettings.from_settings(ws.config.settings.curate)
    assert settings.targets["ranker"] == ws.config.settings.curate.target_scope_ranker == 0.9
    scope = StageMetrics("scope", "file_recall", 12, 0.6, (), ())
    with closing(ws.raw_db()) as raw, closing(ws.curated_db()) as curated:
        metric = ranker_metric(raw, ws.root, scope)
        logs = LogAnalysis(raw)
        candidates = build_candidates(
            logs, [GROUP], settings.options, repos_dir=ws.repos_dir, curated=curated
        )
    assert (metric.stage, metric.mean, metric.n) == ("ranker", 0.6, 12)
    settings = replace(settings, targets={**settings.targets, "ranker": 0.85})
    plan = plan_from(candidates, {"ranker": metric}, {"tasks": 30}, settings)
    entry = next(a for a in plan["adapters"] if a["name"] == "scope-ranker")
    assert entry["train"] and entry["rank"] == 1
    assert entry["weakness"] == 0.25 and entry["metric"]["target"] == 0.85
    assert entry["priority"] == 0.25  # 32 train rows >= 4 x min_examples (5)
