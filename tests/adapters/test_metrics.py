"""Metrics per adapter kind and the bootstrap noise floor, on real outputs and a real git
repository for patches."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cra.adapters.metrics import (
    Reference,
    bootstrap_floor,
    compare,
    primary_metrics,
    score_output,
)


def test_scope_scores_file_recall_and_precision_from_any_answer_shape() -> None:
    """Scope answers as lines or JSON score file recall and precision against the gold files."""
    ref = Reference("", files=("src/a.py", "src/b.py"))
    assert score_output("scope", "src/a.py\nsrc/c.py", ref) == {
        "file_recall": 0.5,
        "file_precision": 0.5,
    }
    assert score_output("scope", json.dumps(["src/a.py", "src/b.py"]), ref)["file_recall"] == 1.0
    assert score_output("scope", "", ref) == {"file_recall": 0.0, "file_precision": 0.0}
    # Without gold from raw.db the reference answer is the gold.
    assert score_output("scope", "README.md", Reference("README.md"))["file_precision"] == 1.0


def test_precision_matches_qualified_and_bare_symbol_names() -> None:
    """Precision answers match gold symbols by qualified or bare name."""
    ref = Reference("", symbols=("src/a.py::Parser.parse", "src/a.py::helper"))
    scored = score_output("precision", "src/a.py::Parser.parse, unrelated", ref)
    assert scored["symbol_recall"] == 0.5 and scored["symbol_precision"] == 0.5
    assert score_output("precision", '["parse", "helper"]', ref)["symbol_recall"] == 1.0


def test_planning_uses_the_harness_scorer_and_an_invalid_plan_scores_zero() -> None:
    """Planning answers are scored by the harness plan scorer; an invalid plan scores zero."""
    plan = {
        "summary": "Guard empty input",
        "steps": [
            {
                "id": 1,
                "file": "src/a.py",
                "symbols": ["mean"],
                "action": "modify",
                "description": "guard",
                "depends_on": [],
            }
        ],
        "tests": [{"file": "tests/test_a.py", "description": "empty"}],
    }
    ref = Reference("", files=("src/a.py",), symbols=("src/a.py::mean",))
    good = score_output("planning", json.dumps(plan), ref)
    assert good["alignment"] == 1.0 and good["valid"] == 1.0
    assert score_output("planning", "not a plan", ref)["alignment"] == 0.0
    # The reference plan is the gold when the task is not in raw.db.
    assert (
        score_output("planning", json.dumps(plan), Reference(json.dumps(plan)))["alignment"] == 1.0
    )


def test_execute_code_checks_that_the_patch_applies_to_the_parent(tmp_path: Path) -> None:
    """An execute-code patch scores only if it applies to the parent; no worktree is left."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            check=True,
            env={
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@t",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t",
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
            },
        ).stdout

    git("init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "Add a")
    parent = git("rev-parse", "HEAD").strip()
    patch = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    ref = Reference("", repo_dir=repo, parent=parent)
    assert score_output("execute-code", "Here is the fix:\n" + patch, ref) == {"patch_applies": 1.0}
    stale = patch.replace("-x = 1", "-x = 5")
    assert score_output("execute-code", stale, ref) == {"patch_applies": 0.0}
    assert score_output("execute-code", "no patch at all", ref) == {"patch_applies": 0.0}
    assert git("worktree", "list").count("\n") == 1  # the scratch worktree is gone


def test_other_kinds_use_token_f1_and_exact_match() -> None:
    """Other adapter kinds are scored by token F1 and exact match."""
    assert primary_metrics("task-analysis") == ("token_f1",)
    scored = score_output("task-analysis", "fix the parser", Reference("fix the parser"))
    assert scored == {"token_f1": 1.0, "exact_match": 1.0}
    assert score_output("task-analysis", "fix it", Reference("fix the parser"))["token_f1"] == (
        pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    )


def test_bootstrap_floor_grows_with_noise_and_shrinks_with_examples() -> None:
    """The bootstrap noise floor grows with noise and shrinks with more examples."""
    assert bootstrap_floor([0.0, 0.0, 0.0], samples=200, quantile=0.95) == 0.0
    small = bootstrap_floor([1.0, -1.0] * 2, samples=500, quantile=0.95)
    large = bootstrap_floor([1.0, -1.0] * 50, samples=500, quantile=0.95)
    assert 0 < large < small
    assert bootstrap_floor([1.0, -1.0], samples=0, quantile=0.95) == 0.0


def test_compare_flags_only_drops_beyond_the_floor() -> None:
    """Compare flags a metric as regressed only when it drops by more than the floor."""
    old = {
        "metrics": {"file_recall": 0.8, "file_precision": 0.5},
        "per_example": {"file_recall": [0.8] * 10, "file_precision": [0.5] * 10},
    }
    new = {
        "metrics": {"file_recall": 0.7, "file_precision": 0.9},
        "per_example": {"file_recall": [0.7] * 10, "file_precision": [0.9] * 10},
    }
    tight = compare("scope", new, old, floor=0.05, samples=100, quantile=0.95)
    assert tight["regressions"] == ["file_recall"]
    loose = compare("scope", new, old, floor=0.2, samples=100, quantile=0.95)
    assert loose["regressions"] == []
