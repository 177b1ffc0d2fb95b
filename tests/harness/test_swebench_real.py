"""A real history through SWE-bench and back: parso's verified tasks exported, read by
swebench's own loader, applied with `git apply`, and imported into a second workspace."""

from __future__ import annotations

import json
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from cra.harness.mine import mine_repo
from cra.harness.swebench import export_swebench
from cra.harness.swebench_import import import_swebench
from cra.harness.validate import ValidateOptions, validate_repo
from cra.repos.pack import PackOptions, pack
from cra.workspace import init_workspace
from tests.harness.helpers import apply_at_base, load_instances

BUNDLE = Path(__file__).resolve().parents[3] / "shared" / "real-repos" / "parso.bundle"

pytestmark = [
    pytest.mark.network,
    pytest.mark.slow,
    pytest.mark.skipif(
        not BUNDLE.exists(), reason="the real-repos bundles are not beside the checkout"
    ),
]


def test_parso_tasks_round_trip_through_swebench(workspace, tmp_path: Path) -> None:
    """Verified parso tasks export as instances swebench loads, whose patches apply at
    base_commit, and import into another workspace with the same FAIL_TO_PASS sets."""
    source = tmp_path / "parso-src"
    subprocess.run(["git", "clone", "-q", str(BUNDLE), str(source)], check=True)
    pack(workspace, str(source), PackOptions(name="parso"))
    mine_repo(workspace, "parso")
    validate_repo(workspace, "parso", ValidateOptions(sample=6, runs=1))
    out = tmp_path / "parso.jsonl"
    exported = export_swebench(workspace, out, repo="parso")
    assert exported.instances >= 1
    instances = load_instances(out)
    assert len(instances) == exported.instances
    apply_at_base(source, instances[0], tmp_path / "applied")

    other = init_workspace(tmp_path / "second").workspace
    subprocess.run(
        ["cp", "-a", str(workspace.repos_dir / "parso"), str(other.repos_dir / "parso")],
        check=True,
    )
    imported = import_swebench(other, out)
    assert (imported.reused, imported.made) == (len(instances), 0)
    with closing(other.raw_db()) as conn:
        rows = conn.execute("SELECT task_id, fail_to_pass FROM outcomes WHERE kind = 'import'")
        claims = {task_id: set(json.loads(f2p)) for task_id, f2p in rows}
    assert claims == {
        str(i["cra_task_id"]): set(json.loads(str(i["FAIL_TO_PASS"]))) for i in instances
    }
    assert import_swebench(other, out).unchanged == len(instances)
