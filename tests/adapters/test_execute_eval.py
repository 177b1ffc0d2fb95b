"""An execute-code adapter's outputs are graded by the task's own tests in the sandbox."""

from __future__ import annotations

import dataclasses
import os
from contextlib import closing

import pytest

from cra.adapters.evaluate import _reference, _tests_pass
from cra.adapters.metrics import primary_metrics, score_output
from cra.harness.grading import task_gold_patch
from cra.harness.mine import mine_repo
from cra.harness.validate import ValidateOptions, validate_repo
from cra.sandbox import probe, sandbox_uid

pytestmark = pytest.mark.skipif(
    probe("bwrap", sandbox_uid(61000)) is not None
    and (os.geteuid() == 0 or probe("unshare", None) is not None),
    reason="no sandbox that can reach pytest's temp folders runs here (install bubblewrap)",
)


def test_execute_code_output_passes_only_when_the_tasks_tests_do(
    workspace, packed, project_repo
) -> None:
    """An execute-code answer passes only if the task tests pass; unverified tasks go ungraded."""
    assert primary_metrics("execute-code") == ("patch_applies", "tests_pass")
    mine_repo(workspace, "tally")
    bugfix = project_repo.of_kind("bugfix")[0]
    validate_repo(workspace, "tally", ValidateOptions(limit=1, runs=1))
    task_id = f"tally@{bugfix.sha[:12]}"
    gold = task_gold_patch(workspace, task_id)
    row = {
        "prompt": [],
        "completion": [{"role": "assistant", "content": gold}],
        "meta": {"task_id": task_id},
    }
    with closing(workspace.raw_db()) as conn:
        ref = _reference(conn, workspace.root, row)
    assert ref.verified and ref.task_id == task_id
    answer = "Here is the fix:\n\n" + gold
    assert score_output("execute-code", answer, ref) == {"patch_applies": 1.0}
    assert _tests_pass(workspace, ref, answer, "scope@v1") == {"tests_pass": 1.0}
    # It applies, but the new test still fails: unresolved.
    useless = gold.replace("return 0.0", "return None")
    assert useless != gold
    assert score_output("execute-code", useless, ref) == {"patch_applies": 1.0}
    assert _tests_pass(workspace, ref, useless, "scope@v1") == {"tests_pass": 0.0}
    assert _tests_pass(workspace, ref, "I would change mean().", "scope@v1") == {"tests_pass": 0.0}
    # A task validation never proved is not graded: the metric is left out, not zero.
    assert _tests_pass(workspace, dataclasses.replace(ref, verified=False), gold, "x") == {}
    with closing(workspace.raw_db()) as conn:
        verdicts = [
            r[0]
            for r in conn.execute(
                "SELECT verdict FROM outcomes WHERE kind = 'patch_grade' ORDER BY id"
            )
        ]
    assert verdicts == ["resolved", "unresolved"]
