"""A candidate that differs from the active version only in its training seed is never
counted as an improvement: real ranker training, the registry's gate and its noise floor."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from cra.adapters.registry import list_versions
from cra.loop.run import start_loop
from cra.loop.steps import DEFAULT_STEPS
from tests.loop.helpers import ranker_loop_workspace, recorded, seeded_ranker_step

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder the ranker trains from (built once)."""
    from cra.fixtures.ranker import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny")


def test_a_seed_only_change_is_never_counted_as_an_improvement(workspace, encoder) -> None:
    """Two cycles train the ranker on the same mined history with only `[ranker] seed`
    changed; the second candidate is within the gate's noise floor of the first, so its
    cycle records no improvement (the promote step says why) and did not help, though the
    gate lets it through (no regression beyond the floor either)."""
    ws = ranker_loop_workspace(workspace, encoder, 1)
    evaluate, promote, check = (
        s for s in DEFAULT_STEPS if s.name in ("evaluate", "promote", "check")
    )
    steps = (seeded_ranker_step([1, 2]), evaluate, promote, check)
    start_loop(ws, {"max_cycles": 2, "patience": 5}, steps=steps)
    with closing(ws.raw_db()) as conn:
        first, second = sorted(list_versions(conn, ws.root), key=lambda v: v.version)
    assert (first.hyperparams.pop("seed"), second.hyperparams.pop("seed")) == (1, 2)
    assert first.hyperparams == second.hyperparams
    rec = recorded(ws)
    cycle = rec.cycles[1].summary
    assert (cycle["candidates"], cycle["improved"], cycle["helped"]) == ([second.ref], [], False)
    promoted = next(s for s in rec.steps if s.step == "promote" and s.cycle == 2)
    assert f"{second.ref} promoted, but not an improvement" in (promoted.reason or "")
    assert f"beyond the noise floor against {first.ref}" in (promoted.reason or "")
