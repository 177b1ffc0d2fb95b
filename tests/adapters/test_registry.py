"""The registry over real SQLite and real PEFT adapter directories: gated promotion,
rollback to the exact previous version, automatic rollback on a planted live regression,
refusal of tampered files, and concurrent promotes of which only one can win."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

from cra.adapters import lifecycle
from cra.adapters.registry import (
    RegistryConflict,
    active_version,
    events,
    get_version,
    store_eval,
)
from cra.artefacts import IncompatibleAdapter
from cra.errors import UsageError
from cra.fsutil import now_iso
from cra.workspace import Workspace, open_workspace
from tests.adapters.helpers import candidate, plant_live_calls, planted_eval, status
from tests.helpers import model_workspace


@pytest.fixture
def ws(workspace: Workspace, tiny_model_dir: Path) -> Workspace:
    """A workspace whose base model is the tiny model, with a dataset."""
    return model_workspace(workspace, tiny_model_dir)


def test_versions_are_numbered_checksummed_and_kept(ws: Workspace, tmp_path: Path) -> None:
    """Versions are numbered, checksummed and kept; an orphan folder's number is skipped."""
    assert [candidate(ws, tmp_path, s) for s in (1, 2)] == [1, 2]
    with closing(ws.raw_db()) as conn:
        v2 = get_version(conn, ws.root, "scope", 2)
    assert v2.path == ws.adapters_dir / "scope" / "v2" and v2.status == "candidate"
    assert set(v2.files_sha256) >= {"adapter_config.json", "adapter_model.safetensors"}
    meta = json.loads((v2.path / "meta.json").read_text())
    assert meta["version"] == 2 and meta["files_sha256"] == v2.files_sha256
    # An orphan folder (a crash between the move and the commit) is never reused.
    (ws.adapters_dir / "scope" / "v3").mkdir()
    assert candidate(ws, tmp_path, 3) == 4


def test_promote_refuses_without_eval_and_without_a_common_holdout(
    ws: Workspace, tmp_path: Path
) -> None:
    """Promote refuses a version with no eval, or none on the active version's holdout."""
    v1 = candidate(ws, tmp_path, 1)
    with pytest.raises(lifecycle.PromotionRefused, match="no eval results"):
        lifecycle.promote(ws, f"scope@v{v1}")
    planted_eval(ws, v1, [1.0, 1.0])
    lifecycle.promote(ws, "scope@v1")
    v2 = candidate(ws, tmp_path, 2)
    store_eval(
        ws,
        "scope",
        v2,
        "other:feedbeef",
        {"metrics": {"file_recall": 1.0}, "primary": ["file_recall"], "evaluated_at": now_iso()},
    )
    with pytest.raises(lifecycle.PromotionRefused, match="no eval on the same holdout"):
        lifecycle.promote(ws, "scope@v2")
    assert status(ws) == {1: "active", 2: "candidate"}


def test_promote_refuses_a_regressing_candidate_and_accepts_an_improving_one(
    ws: Workspace, tmp_path: Path
) -> None:
    """Promote rejects a candidate that regresses and activates one that improves."""
    v1, v2, v3 = (candidate(ws, tmp_path, s) for s in (1, 2, 3))
    planted_eval(ws, v1, [1.0, 0.0] * 8)
    planted_eval(ws, v2, [0.0, 0.0] * 8)  # -0.5: far beyond the bootstrap floor of 16 examples
    planted_eval(ws, v3, [1.0, 1.0, 1.0, 0.0] * 4)
    first = lifecycle.promote(ws, "scope@v1")  # against the base model's 0.0
    assert first.from_version is None and status(ws)[1] == "active"
    with pytest.raises(lifecycle.PromotionRefused, match="regresses against scope@v1"):
        lifecycle.promote(ws, "scope@v2")
    assert status(ws) == {1: "active", 2: "rejected", 3: "candidate"}
    move = lifecycle.promote(ws, "scope@v3")
    assert (move.to_version, move.from_version, move.forced) == (3, 1, False)
    assert move.details["metrics"]["file_recall"]["delta"] == pytest.approx(0.25)
    assert status(ws) == {1: "retired", 2: "rejected", 3: "active"}
    with closing(ws.raw_db()) as conn:
        history = [(e.event, e.version, e.from_version) for e in events(conn, "scope")]
    assert ("rejected", 2, 1) in history and history[-1] == ("promoted", 3, 1)


def test_promoting_the_active_version_is_refused_and_promotion_tells_what_made_it_active(
    ws: Workspace, tmp_path: Path
) -> None:
    """Promoting the active version again is refused; `promotion` returns the move that
    made it active, and None once it no longer is."""
    v1 = candidate(ws, tmp_path, 1)
    planted_eval(ws, v1, [1.0, 0.0] * 8)
    first = lifecycle.promote(ws, "scope@v1", reason="first")
    with pytest.raises(UsageError, match="already the active version"):
        lifecycle.promote(ws, "scope@v1")
    again = lifecycle.promotion(ws, "scope@v1")
    assert again is not None
    assert (again.to_version, again.from_version, again.reason) == (1, None, "first")
    assert again.details == json.loads(json.dumps(first.details))
    lifecycle.rollback(ws, "scope")
    assert lifecycle.promotion(ws, "scope@v1") is None


def test_a_drop_within_the_noise_floor_is_not_a_regression(ws: Workspace, tmp_path: Path) -> None:
    """A metric drop within the configured noise floor does not block promotion."""
    (ws.root / "cra.toml").write_text(
        f'[model]\nbase = "{ws.config.settings.model.base}"\n[adapters]\nnoise_floor = 0.3\n'
    )
    ws = open_workspace(ws.root)
    v1, v2 = candidate(ws, tmp_path, 1), candidate(ws, tmp_path, 2)
    planted_eval(ws, v1, [1.0, 1.0, 1.0, 1.0])
    planted_eval(ws, v2, [1.0, 1.0, 1.0, 0.0])  # -0.25, inside the 0.3 floor
    lifecycle.promote(ws, "scope@v1")
    lifecycle.promote(ws, "scope@v2")
    assert status(ws)[2] == "active"


def test_force_promotes_a_regression_and_is_recorded(ws: Workspace, tmp_path: Path) -> None:
    """A forced promotion of a regression goes through and is logged as forced, with reason."""
    v1, v2 = candidate(ws, tmp_path, 1), candidate(ws, tmp_path, 2)
    planted_eval(ws, v1, [1.0, 1.0])
    planted_eval(ws, v2, [0.0, 0.0])
    lifecycle.promote(ws, "scope@v1")
    lifecycle.promote(ws, "scope@v2", force=True, reason="operator override")
    with closing(ws.raw_db()) as conn:
        last = events(conn, "scope")[-1]
    assert (last.event, last.version, last.forced, last.reason) == (
        "promoted",
        2,
        True,
        "operator override",
    )


def test_rollback_restores_the_exact_previous_version(ws: Workspace, tmp_path: Path) -> None:
    """Rollback reactivates the previous version's exact files and retires the newer one."""
    v1, v2 = candidate(ws, tmp_path, 1), candidate(ws, tmp_path, 2)
    planted_eval(ws, v1, [1.0, 0.0])
    planted_eval(ws, v2, [1.0, 1.0])
    lifecycle.promote(ws, "scope@v1")
    with closing(ws.raw_db()) as conn:
        before = get_version(conn, ws.root, "scope", 1)
    lifecycle.promote(ws, "scope@v2")
    move = lifecycle.rollback(ws, "scope", reason="bad answers in review")
    assert (move.to_version, move.from_version) == (1, 2)
    with closing(ws.raw_db()) as conn:
        after = active_version(conn, ws.root, "scope")
        last = events(conn, "scope")[-1]
    assert after is not None
    assert (after.version, after.path, after.files_sha256) == (1, before.path, before.files_sha256)
    assert status(ws) == {1: "active", 2: "retired"}  # nothing deleted
    assert (ws.adapters_dir / "scope" / "v2" / "adapter_model.safetensors").is_file()
    assert (last.event, last.version, last.from_version) == ("rolled_back", 1, 2)
    # Rolling back the first active version leaves the base model serving.
    lifecycle.rollback(ws, "scope")
    assert "active" not in status(ws).values()


def test_check_rolls_back_automatically_on_a_planted_live_regression(
    ws: Workspace, tmp_path: Path
) -> None:
    """Check rolls back on its own once enough live calls show a metric below what was promised."""
    v1, v2 = candidate(ws, tmp_path, 1), candidate(ws, tmp_path, 2)
    planted_eval(ws, v1, [1.0, 0.0, 1.0, 1.0])
    planted_eval(ws, v2, [1.0, 1.0, 1.0, 1.0])
    lifecycle.promote(ws, "scope@v1")
    lifecycle.promote(ws, "scope@v2")
    plant_live_calls(ws, 2, ["src/tally/stats.py"] * 3)
    assert lifecycle.check(ws, "scope") is None  # too few live samples to judge
    plant_live_calls(ws, 2, ["src/tally/stats.py"] * 3)
    assert lifecycle.check(ws, "scope") is None  # live recall 1.0 matches what it promised
    plant_live_calls(ws, 2, ["README.md"] * 12)  # the regression: live recall 6/18
    move = lifecycle.check(ws, "scope")
    assert move is not None and (move.to_version, move.from_version) == (1, 2)
    assert "automatic: live file_recall 0.333 < promoted 1.000" in move.reason
    assert status(ws) == {1: "active", 2: "rejected"}
    with closing(ws.raw_db()) as conn:
        last = events(conn, "scope")[-1]
    assert last.event == "rolled_back" and last.details["automatic"] is True
    assert last.details["regressions"] == ["file_recall", "file_precision"]


def test_tampered_adapter_files_are_refused_naming_the_file(ws: Workspace, tmp_path: Path) -> None:
    """Promote and eval refuse an adapter whose files changed, naming the file."""
    from cra.adapters.evaluate import evaluate

    v1 = candidate(ws, tmp_path, 1)
    planted_eval(ws, v1, [1.0])
    weights = ws.adapters_dir / "scope" / "v1" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IncompatibleAdapter, match=r"adapter_model\.safetensors changed"):
        lifecycle.promote(ws, "scope@v1")
    with pytest.raises(IncompatibleAdapter, match=r"adapter_model\.safetensors changed"):
        evaluate(ws, "scope@v1")
    assert status(ws) == {1: "candidate"}


def v1_active_v2_v3_better(ws: Workspace, tmp_path: Path) -> None:
    """scope v1 active; v2 and v3 both evaluated better, so each passes the gate alone."""
    v1, v2, v3 = (candidate(ws, tmp_path, s) for s in (1, 2, 3))
    planted_eval(ws, v1, [0.0, 0.0])
    planted_eval(ws, v2, [1.0, 1.0])
    planted_eval(ws, v3, [1.0, 1.0])
    lifecycle.promote(ws, "scope@v1")


def test_two_concurrent_promotes_cannot_both_win(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both pass the gate against v1; the barrier makes them switch at the same time."""
    v1_active_v2_v3_better(ws, tmp_path)
    barrier = threading.Barrier(2)
    real_swap = lifecycle.swap

    def swap_together(*args, **kwargs):  # the real swap, entered by both at once
        barrier.wait(timeout=30)
        return real_swap(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "swap", swap_together)
    outcomes: dict[str, object] = {}

    def run(ref: str) -> None:
        try:
            outcomes[ref] = lifecycle.promote(ws, ref)
        except RegistryConflict as exc:
            outcomes[ref] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in ("scope@v2", "scope@v3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [r for r, o in outcomes.items() if isinstance(o, lifecycle.Move)]
    lost = [r for r, o in outcomes.items() if isinstance(o, RegistryConflict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    states = status(ws)
    assert list(states.values()).count("active") == 1
    assert states[int(won[0][-1])] == "active" and states[int(lost[0][-1])] == "candidate"


def test_two_processes_promoting_at_once_never_both_replace_the_same_version(
    ws: Workspace, tmp_path: Path
) -> None:
    """Two concurrent promotions leave one active version; only one replaces the old one."""
    v1_active_v2_v3_better(ws, tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cra", "-w", str(ws.root), "adapter", "promote", ref],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for ref in ("scope@v2", "scope@v3")
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert list(status(ws).values()).count("active") == 1, outputs
    with closing(ws.raw_db()) as conn:
        replaced_v1 = conn.execute(
            "SELECT count(*) FROM adapter_events WHERE event = 'promoted' AND from_version = 1"
        ).fetchone()[0]
    assert replaced_v1 == 1, outputs


def test_cli_errors_are_one_line_with_a_hint(ws: Workspace, tmp_path: Path) -> None:
    """Adapter CLI errors are one error line with a hint and the right exit code."""
    from click.testing import CliRunner

    from cra.cli import cli

    candidate(ws, tmp_path, 1)

    def run(*args: str):
        return CliRunner().invoke(cli, ["-w", str(ws.root), "adapter", *args])

    cases = [
        (("promote", "scope"), "error: 'scope' names no version", 2),
        (("promote", "scope@v9"), "error: no adapter version scope@v9", 1),
        (("promote", "scope@v1"), "error: scope@v1 has no eval results", 1),
        (("rollback", "scope"), "error: scope has no active version to roll back", 2),
        (("rollback", "scope", "--to", "x"), "error: --to 'x' is not a version", 2),
        (("rollback", "scope@v1"), "error: rollback takes an adapter name", 2),
        (("show", "nope"), "error: no adapter named 'nope'", 1),
        (("eval", "Bad@v1"), "error: invalid adapter name 'Bad'", 2),
        (("eval", "a b@v1"), "error: cannot read adapter reference", 2),
    ]
    for args, message, code in cases:
        result = run(*args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output and "hint:" in result.output, result.output
        assert "Traceback" not in result.output
    listed = run("list")
    assert "scope@v1" in listed.output and "candidate" in listed.output
    assert "scope has no active version: nothing to check" in run("check", "scope").output
