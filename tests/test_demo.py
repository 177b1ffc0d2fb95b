"""`cra demo` sets up a workspace with the sample repository, and re-runs cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from cra.cli import cli
from cra.report.build import write_report
from cra.workspace import open_workspace
from tests.helpers import vllm_python
from tests.report.helpers import Drawn, chromium, run_chromium


def test_demo_runs_twice(tmp_path: Path) -> None:
    """cra demo runs end to end offline, and a second run reuses everything it made; its
    report opens offline in headless chromium with every chart drawn."""
    target = tmp_path / "demo"
    first = CliRunner().invoke(cli, ["demo", str(target)], catch_exceptions=False)
    assert first.exit_code == 0
    assert "built sample repository" in first.output
    assert "20 commits" not in first.output  # the demo's sample has extra history
    assert (target / "sources" / "tally" / ".git").is_dir()
    assert re.search(r"raw\.db schema v\d+: 1 repos, 0 commits, 0 tasks", first.output)
    assert "packed repos/tally: 97 commits" in first.output
    assert "no network" in first.output
    assert "qualifying" in first.output
    assert "alignment min/q1/median/q3/max" in first.output
    verified = next(line for line in first.output.splitlines() if "verified: " in line)
    count, total = verified.split("verified: ")[1].split(" qualifying")[0].split(" of ")
    assert int(total) > 0 and int(count) == int(total)  # every sample task is proven
    # gold-derived SFT rows, and gold patches of the verified commits
    for adapter in ("scope", "precision", "planning", "execute-code"):
        assert f"train {adapter}" in first.output
    assert "skip  task-analysis" in first.output and "not enough data" in first.output
    assert "dataset training/datasets/demo-1:" in first.output
    card = json.loads((target / "training" / "datasets" / "demo-1" / "card.json").read_text())
    groups = {"scope/sft", "precision/sft", "planning/sft", "execute-code/sft"}
    groups |= {"scope-ranker/ranker"}  # the rows the demo's ranker trains from
    assert set(card["counts"]["train"]["by_group"]) == groups
    assert (target / "planning" / "demo-plan.json").is_file()
    assert "cra adapter eval scope@v1: file recall 1.00 (base model 0.00)" in first.output
    assert "cra adapter promote scope@v2: active, v1 retired" in first.output
    assert "cra adapter rollback scope: v1 active again" in first.output
    assert "cra adapter promote scope@v3: refused" in first.output
    # [10] the scope ranker: the plan ranks it like any adapter; the sample's fixes and
    # untested maintenance commits change files their parents hold, so the curated
    # dataset teaches it; it is trained on that dataset, evaluated next to BM25, promoted
    assert "train scope-ranker  rows train/eval ranker" in first.output
    trained = "cra train --adapter scope-ranker --dataset demo-1: scope-ranker@v1 candidate"
    assert trained in first.output
    assert re.search(r"eval scope-ranker@v1: recall@5 [\d.]+ \(BM25 [\d.]+\)", first.output)
    assert "cra adapter promote scope-ranker@v1: active" in first.output
    # [11] a short loop: the ranker trained on the mined history, then nothing new to learn
    assert "cra loop start: " in first.output
    cycles = [line for line in first.output.splitlines() if line.startswith("  cycle ")]
    # patience counts cycles without a real improvement: it ends after one or two of them
    assert len(cycles) in (2, 3) and cycles[0].startswith("  cycle 1 (")
    assert "scope-ranker@v" in cycles[0] and "gate: promoted scope-ranker@v" in cycles[0]
    assert all("no candidate; gate: skipped" in line for line in cycles[1:])
    assert cycles[-1].endswith("then stop: converged")
    # [12] one request per stage through vLLM: scope has an active adapter, the rest the base
    if vllm_python() is None:
        assert "skipped: no vLLM interpreter" in first.output
    else:
        assert "scope          -> adapter scope@v1" in first.output
        for stage in ("precision", "task-analysis", "plan", "execute"):
            assert f"{stage:<14} -> the base model" in first.output
        assert "cra serve stop: stopped" in first.output
        assert not (target / "harness" / "serve" / "state.json").exists()
    second = CliRunner().invoke(cli, ["demo", str(target)], catch_exceptions=False)
    assert second.exit_code == 0
    assert "reused" in second.output
    assert "sample repository already at" in second.output
    assert "planned 0 tasks" in second.output
    assert "validated 0 tasks" in second.output
    assert "already packed" in second.output
    assert "reused, no network" in second.output
    assert "dataset demo-1 already written" in second.output
    assert "loop run 1 already ran: " in second.output
    assert "scope@v1 active, scope@v2 retired, scope@v3 rejected" in second.output
    _report_draws_in_chromium(target, tmp_path)


def _report_draws_in_chromium(target: Path, tmp_path: Path) -> None:
    binary = chromium()
    if binary is None:
        return  # the report tests skip, saying why, where chromium is not installed
    result = write_report(open_workspace(target), tmp_path / "report")
    dom = run_chromium(binary, result.path, tmp_path, "--dump-dom")
    drawn = Drawn()
    drawn.feed(dom.stdout)
    expected = {k: list(v) for s in result.sections for k, v in s.charts.items()}
    assert expected and drawn.rendered == str(len(expected)), dom.stderr[-2000:]
    assert drawn.charts == expected
    assert [u for u in drawn.links if u.startswith(("http:", "https:", "//"))] == []
