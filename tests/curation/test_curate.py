"""The rules a dataset obeys, pinned on a synthetic raw.db written by the real writers:
time split, dedup, domain cap, replay, DPO margin, provenance; and bad input."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.curation.curate import DatasetExists, PlanError, curate, load_plan
from cra.curation.plan import EmptyDatabase, NotEnoughData, build_plan, write_plan
from cra.fixtures.logs import build_synthetic_log
from cra.fsutil import sha256_file
from cra.harness.plan import parse_plan
from cra.workspace import Workspace, init_workspace

META_KEYS = {
    "adapter",
    "technique",
    "task_id",
    "repo",
    "commit",
    "authored_at",
    "source",
    "scores",
    "domain",
}


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def plan_and_curate(ws: Workspace, dataset_id: str, name: str = "p.json"):
    plan_path = write_plan(ws.planning_dir, build_plan(ws), ws.planning_dir / name)
    result = curate(ws, plan_path, dataset_id)
    return plan_path, result, read(result.path / "train.jsonl"), read(result.path / "eval.jsonl")


def test_time_split_and_provenance(make_log) -> None:
    """Eval rows are newer than all train rows, no task is on both sides, rows keep provenance."""
    ws, log = make_log(tasks_per_repo=6)
    plan_path, result, train, held = plan_and_curate(ws, "d1")
    plan = json.loads(plan_path.read_text())
    boundary = plan["holdout"]["boundary"]
    assert train and held
    # Every eval row is newer than every train row; no task is on both sides.
    assert max(r["meta"]["authored_at"] for r in train) < boundary
    assert min(r["meta"]["authored_at"] for r in held) >= boundary
    assert not {r["meta"]["task_id"] for r in train} & {r["meta"]["task_id"] for r in held}
    for row in train + held:
        meta = row["meta"]
        assert META_KEYS <= set(meta)
        assert meta["task_id"] in log.tasks and meta["repo"] == log.repos[meta["task_id"]]
        assert len(meta["commit"]) == 40
        assert meta["source"] in {"gold", "harness", "teacher"}
        assert row["prompt"][-1]["role"] == "user"
        if meta["technique"] == "sft":
            assert [m["role"] for m in row["completion"]] == ["assistant"]
            assert "chosen" not in row
        else:
            assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    groups = Counter((r["meta"]["adapter"], r["meta"]["technique"]) for r in train)
    assert set(groups) == {
        ("scope", "sft"),
        ("precision", "sft"),
        ("planning", "sft"),
        ("planning", "dpo"),
        ("task-analysis", "sft"),
    }
    # Gold scope answers are the files the commit changed.
    with closing(ws.raw_db()) as conn:
        gold = {
            r[0]: [f["path"] for f in json.loads(r[1])]
            for r in conn.execute("SELECT task_id, gold_files FROM tasks")
        }
        registered = conn.execute("SELECT * FROM training_datasets WHERE id = 'd1'").fetchone()
    for row in train:
        if row["meta"]["adapter"] == "scope":
            assert json.loads(row["completion"][0]["content"]) == gold[row["meta"]["task_id"]]
    # Card and registry: counts and hashes of what is on disk.
    card = json.loads((result.path / "card.json").read_text())
    assert card["counts"]["train"]["rows"] == len(train)
    assert card["counts"]["eval"]["rows"] == len(held)
    assert sum(card["counts"]["train"]["by_source"].values()) == len(train)
    assert set(card["counts"]["train"]["by_domain"]) <= {
        "web",
        "cli",
        "data",
        "parsing",
        "testing",
        "ml",
    }
    hashes = json.loads(registered["sha256"])
    for name in ("train.jsonl", "eval.jsonl", "card.json", "README.md"):
        assert hashes[name] == sha256_file(result.path / name)
    assert card["sha256"]["train.jsonl"] == hashes["train.jsonl"]
    assert registered["path"] == "training/datasets/d1"
    assert registered["plan_path"] == "planning/p.json"
    assert json.loads(registered["counts"])["train"] == len(train)


def test_exact_and_near_duplicates_are_removed_and_counted(make_log) -> None:
    """Curation drops exact and near-duplicate rows, keeping one of each, and counts the drops."""
    ws, log = make_log(tasks_per_repo=6, exact_duplicates=3, near_duplicates=3)
    _, result, train, held = plan_and_curate(ws, "d1")
    rows = train + held
    filters = {f["filter"].split(" (")[0]: f for f in result.card["filters"]}
    # Each planted copy repeats its original's gold rows (scope, precision, planning) and
    # the teacher's analysis: four rows per copy.
    assert filters["exact duplicate"]["dropped"] >= 3 * 4
    assert filters["near-duplicate"]["dropped"] >= 3 * 4
    for original, copy in log.exact_duplicates + log.near_duplicates:
        for adapter in ("scope", "precision", "task-analysis"):
            kept = [
                r
                for r in rows
                if r["meta"]["adapter"] == adapter and r["meta"]["task_id"] in (original, copy)
            ]
            assert len(kept) == 1, (adapter, original, copy)
    # No two rows left share a prompt and answer.
    keys = Counter(
        json.dumps([r["prompt"][1:], r.get("completion"), r.get("chosen"), r.get("rejected")])
        for r in rows
    )
    assert max(keys.values()) == 1


def test_domain_cap_holds(make_log) -> None:
    """No domain exceeds the domain cap share of any adapter's rows; the drops are counted."""
    counts = {"alpha": 30, "bravo": 6, "charlie": 6, "delta": 6, "echo": 6, "foxtrot": 6}
    ws, _ = make_log(tasks_per_repo=counts)
    _, result, train, held = plan_and_curate(ws, "d1")
    for split in (train, held):
        for group in {(r["meta"]["adapter"], r["meta"]["technique"]) for r in split}:
            members = [r for r in split if (r["meta"]["adapter"], r["meta"]["technique"]) == group]
            share = Counter(r["meta"]["domain"] for r in members)
            assert max(share.values()) <= 0.2 * len(members) + 1e-9, (group, share)
    cap = next(f for f in result.card["filters"] if f["filter"].startswith("domain cap"))
    assert cap["dropped"] > 0 and set(cap["by_domain"]) == {"web"}


def test_replay_comes_from_the_previous_dataset_which_stays_untouched(
    make_log, workspace: Workspace
) -> None:
    """Replay rows are copied from the previous dataset, which stays byte-for-byte unchanged."""
    ws, _ = make_log(tasks_per_repo=5)
    _, first, first_train, _ = plan_and_curate(ws, "d1", "p1.json")
    before = {p.name: sha256_file(p) for p in first.path.iterdir()}
    with closing(ws.raw_db()) as conn:  # a later harness campaign: newer commits
        from datetime import UTC, datetime

        build_synthetic_log(
            conn,
            tasks_per_repo=5,
            start=datetime(2025, 1, 1, tzinfo=UTC),
            teacher_model="teacher-large",
            seed=7,
        )
    _, second, train, held = plan_and_curate(ws, "d2", "p2.json")
    assert {p.name: sha256_file(p) for p in first.path.iterdir()} == before
    replay = [r for r in train if r["meta"]["source"] == "replay"]
    assert replay
    share = len(replay) / len(train)
    assert 0.1 <= share <= 0.2
    assert second.card["replay"]["from"] == ["d1"]
    originals = {json.dumps({**r, "meta": None}, sort_keys=True) for r in first_train}
    for row in replay:
        assert row["meta"]["replay_of"] == "d1"
        assert json.dumps({**row, "meta": None}, sort_keys=True) in originals
    # Fresh rows never repeat what d1 trained on.
    trained = {
        (r["meta"]["adapter"], r["meta"]["technique"], r["meta"]["task_id"]) for r in first_train
    }
    fresh = [r for r in train + held if r["meta"]["source"] != "replay"]
    assert not trained & {
        (r["meta"]["adapter"], r["meta"]["technique"], r["meta"]["task_id"]) for r in fresh
    }
    assert max(r["meta"]["authored_at"] for r in train) < min(
        r["meta"]["authored_at"] for r in held
    )
    with closing(ws.raw_db()) as conn:
        row = conn.execute("SELECT replay_of FROM training_datasets WHERE id = 'd2'").fetchone()
    assert json.loads(row[0]) == ["d1"]


def test_dpo_pairs_respect_the_margin(make_log) -> None:
    """Every DPO pair's chosen plan beats the rejected by at least the margin, as stored."""
    ws, _ = make_log(tasks_per_repo=6)
    _, result, train, held = plan_and_curate(ws, "d1")
    pairs = [r for r in train + held if r["meta"]["technique"] == "dpo"]
    assert pairs
    margin = ws.config.settings.curate.dpo_min_margin
    with closing(ws.raw_db()) as conn:
        for row in pairs:
            scores = row["meta"]["scores"]
            assert scores["chosen"] - scores["rejected"] >= margin
            ids = (row["meta"]["chosen_plan_id"], row["meta"]["rejected_plan_id"])
            got = dict(
                conn.execute(
                    "SELECT plan_id, alignment FROM plan_scores WHERE plan_id IN (?, ?)", ids
                ).fetchall()
            )
            assert got[ids[0]] == scores["chosen"] and got[ids[1]] == scores["rejected"]
            assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
            parse_plan(row["chosen"][0]["content"])  # the chosen answer is a valid plan
    skipped = result.card["skipped_tasks"].get("planning/dpo", {})
    assert all(isinstance(v, int) for v in skipped.values())


def test_not_enough_data_writes_no_plan(make_log) -> None:
    """With too little data train-plan fails naming each adapter and writes no plan."""
    ws, _ = make_log(tasks_per_repo=1)
    with pytest.raises(NotEnoughData, match="not enough data") as info:
        build_plan(ws)
    assert set(info.value.reasons) == {
        "scope",
        "precision",
        "task-analysis",
        "planning",
        "execute-code",
        "scope-ranker",
    }
    out = CliRunner().invoke(cli, ["-w", str(ws.root), "train-plan"])
    assert out.exit_code == 1
    assert "not enough data" in out.output
    assert list(ws.planning_dir.iterdir()) == []


def test_plan_marks_adapters_without_data(make_log) -> None:
    """The plan ranks adapters and marks those without enough data as not trained, with why."""
    ws, _ = make_log(tasks_per_repo=6)
    plan = build_plan(ws)
    by_name = {a["name"]: a for a in plan["adapters"]}
    assert by_name["execute-code"]["train"] is False
    assert by_name["execute-code"]["reason"].startswith("sft: not enough data")
    assert by_name["scope"]["train"] is True
    ranks = [a["rank"] for a in plan["adapters"]]
    assert ranks == list(range(1, 7))  # five LoRA adapters and the scope ranker
    assert all(a["train"] for a in plan["adapters"][:4])
    assert plan["format_version"] == 1 and plan["holdout"]["boundary"]


def test_empty_database(workspace: Workspace) -> None:
    """An empty database makes train-plan fail with one clear line and no traceback."""
    with pytest.raises(EmptyDatabase, match="holds no tasks"):
        build_plan(workspace)
    out = CliRunner().invoke(cli, ["-w", str(workspace.root), "train-plan"])
    assert out.exit_code == 1 and "holds no tasks" in out.output
    assert "Traceback" not in out.output


def test_bad_plans_and_existing_ids(make_log, tmp_path: Path) -> None:
    """Old, unknown or unreadable plans are refused; an existing dataset is never overwritten."""
    ws, _ = make_log(tasks_per_repo=6)
    plan_path = write_plan(ws.planning_dir, build_plan(ws), ws.planning_dir / "p.json")
    plan = json.loads(plan_path.read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**plan, "format_version": 0}))
    with pytest.raises(PlanError, match="format version 0"):
        load_plan(old)
    unknown = tmp_path / "unknown.json"
    adapters = [*plan["adapters"], {"name": "telepathy", "train": True, "techniques": []}]
    unknown.write_text(json.dumps({**plan, "adapters": adapters}))
    with pytest.raises(PlanError, match="unknown adapter 'telepathy'"):
        load_plan(unknown)
    greedy = tmp_path / "greedy.json"
    greedy.write_text(json.dumps({**plan, "replay_share": 0.5}))
    with pytest.raises(PlanError, match="replay_share"):
        load_plan(greedy)
    empty = init_workspace(tmp_path / "empty").workspace
    with pytest.raises(EmptyDatabase, match="holds no tasks"):
        curate(empty, plan_path, "d0")
    assert not (empty.training_dir / "datasets" / "d0").exists()
    junk = tmp_path / "junk.json"
    junk.write_text("{")
    with pytest.raises(PlanError, match="not a readable JSON plan"):
        load_plan(junk)
    out = CliRunner().invoke(cli, ["-w", str(ws.root), "curate-data", "--plan", str(old)])
    assert out.exit_code == 1 and "format version" in out.output
    with pytest.raises(Exception, match="already exists"):
        write_plan(ws.planning_dir, plan, plan_path)
    first = curate(ws, plan_path, "d1")
    before = {p.name: sha256_file(p) for p in first.path.iterdir()}
    with pytest.raises(DatasetExists, match="exists already"):
        curate(ws, plan_path, "d1")
    out = CliRunner().invoke(
        cli, ["-w", str(ws.root), "curate-data", "--plan", str(plan_path), "--out", "d1"]
    )
    assert out.exit_code == 1 and "never overwritten" in out.output
    assert {p.name: sha256_file(p) for p in first.path.iterdir()} == before
    with closing(sqlite3.connect(ws.raw_db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM training_datasets").fetchone()[0] == 1


def test_cli_end_to_end_json(make_log) -> None:
    """train-plan and curate-data write a plan, its table and a dataset, refusing bad IDs."""
    ws, _ = make_log(tasks_per_repo=6)
    runner = CliRunner()
    out = runner.invoke(cli, ["-w", str(ws.root), "train-plan", "--json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    path = Path(plan["path"])
    assert path.is_file() and path.with_suffix(".md").is_file()
    assert "| rank | adapter |" in path.with_suffix(".md").read_text()
    out = runner.invoke(cli, ["-w", str(ws.root), "curate-data", "--plan", str(path), "--json"])
    assert out.exit_code == 0, out.output
    card = json.loads(out.output)
    assert Path(card["path"]).is_dir() and card["id"].startswith("ds-")
    out = runner.invoke(
        cli, ["-w", str(ws.root), "curate-data", "--plan", str(path), "--out", "bad/id"]
    )
    assert out.exit_code == 2 and "invalid dataset ID" in out.output
