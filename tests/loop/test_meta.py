"""The meta step rewrites the loop's strategy: its pure rules, the `meta` event holding
the old and new strategy and why, the train step and the queue obeying it, and a resumed
loop carrying it on."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cra.db import loop as store
from cra.loop import steps as loop_steps
from cra.loop.decide import StopReason
from cra.loop.queue import queue_order
from cra.loop.report import loop_status
from cra.loop.run import resume_loop, start_loop
from cra.loop.state import current_strategy
from cra.loop.steps import DEFAULT_STEPS, FunctionStep, StepContext, StepResult
from cra.loop.strategy import EpochBounds, Strategy, rewrite, strategy_from
from cra.workspace import Workspace
from tests.adapters.helpers import candidate, planted_eval
from tests.helpers import model_workspace
from tests.loop.helpers import cycle_record, recorded

BOUNDS = EpochBounds(base=1.0, step=1.0, most=3.0)
RANKER = "scope-ranker"


def _nothing(number: int, *names: str) -> Any:
    return cycle_record(number, candidates=tuple(f"{n}@v{number}" for n in names))


def test_an_adapter_never_promoted_while_another_was_is_paused() -> None:
    """`other` trained in every cycle of the window but only `scope` was promoted: paused."""
    last = [
        cycle_record(3, candidates=("scope@v1", "other@v1"), promoted=("scope@v1",)),
        cycle_record(4, candidates=("scope@v2", "other@v2")),
    ]
    new = rewrite(Strategy(), last, [], BOUNDS, {})
    assert new.strategy.paused == ("other",)
    assert new.why == ("paused other: no promotion in cycles 3-4 while scope was promoted",)


def test_paused_adapters_train_again_when_nothing_was_promoted() -> None:
    """A window without any promotion resumes every paused adapter."""
    new = rewrite(Strategy(paused=("other",)), [_nothing(5, "scope")], [], BOUNDS, {})
    assert new.strategy.paused == ()
    assert new.why == ("resumed other: no adapter was promoted in cycles 5",)


def test_never_every_adapter_is_paused() -> None:
    """Adapters all promoted, or none promoted, pause nothing: a promoted one keeps training."""
    both = cycle_record(1, candidates=("a@v1", "b@v1"), promoted=("a@v1", "b@v1"))
    assert rewrite(Strategy(), [both], [], BOUNDS, {}).strategy.paused == ()
    assert rewrite(Strategy(), [_nothing(1, "a", "b")], [], BOUNDS, {}).strategy.paused == ()


def test_ranker_epochs_rise_one_step_when_two_windows_promoted_nothing() -> None:
    """No promotion in the window nor the one before, with the ranker trained: epochs +1."""
    new = rewrite(Strategy(), [_nothing(2, RANKER)], [_nothing(1, RANKER)], BOUNDS, {})
    assert new.strategy.ranker_epochs == 2.0
    assert new.why == ("ranker epochs 1 -> 2: nothing promoted in cycles 1 nor 2",)


def test_ranker_epochs_stay_within_their_bound() -> None:
    """Epochs go up to the bound and no further; at it, the rule says so and keeps them."""
    last, before = [_nothing(4, RANKER)], [_nothing(3, RANKER)]
    near = rewrite(Strategy(ranker_epochs=2.5), last, before, BOUNDS, {})
    assert near.strategy.ranker_epochs == 3.0
    at = rewrite(near.strategy, last, before, BOUNDS, {})
    assert at.strategy == near.strategy
    assert at.why[0] == "ranker epochs kept at 3: the bound is 3"
    assert at.why[1].startswith("strategy kept: 0 promotion(s) in cycles 4")


def test_epochs_stay_when_a_window_promoted_or_there_is_none_before() -> None:
    """A promotion in either window, no window before, or no ranker trained: no epoch change."""
    promoted = cycle_record(1, candidates=(f"{RANKER}@v1",), promoted=(f"{RANKER}@v1",))
    cases = [
        ([_nothing(2, RANKER)], [promoted]),
        ([_nothing(2, RANKER)], []),
        ([_nothing(2, "scope")], [_nothing(1, "scope")]),
    ]
    for last, before in cases:
        assert rewrite(Strategy(), last, before, BOUNDS, {}).strategy.ranker_epochs is None


def test_a_repository_that_added_nothing_sends_its_domain_last() -> None:
    """Cycles on `dry` that mined no commits, validated no tasks and improved nothing put
    its domain last; `wet`, which added commits, keeps its domain's place."""
    last = [
        cycle_record(1, repo="dry", new_commits=0, new_tasks=0),
        cycle_record(2, repo="wet", new_commits=4, new_tasks=0),
        cycle_record(3, repo="unknown"),
    ]
    domains = {"dry": "web", "wet": "cli", "unknown": "data"}
    new = rewrite(Strategy(), last, [], BOUNDS, domains)
    assert new.strategy.back_domains == ("web",)
    assert new.why == ("domain web last: dry added no commits or tasks, improved nothing",)


def test_no_change_is_recorded_as_kept() -> None:
    """A window where everything trained was promoted keeps the strategy, saying why."""
    last = [cycle_record(7, candidates=("scope@v3",), promoted=("scope@v3",))]
    new = rewrite(Strategy(), last, [], BOUNDS, {})
    assert new.strategy == Strategy()
    assert new.why == ("strategy kept: 1 promotion(s) in cycles 7, 0 before",)


def test_the_queue_takes_the_strategys_domains_last() -> None:
    """Domains the strategy puts last come after covered ones, which come after new ones."""
    todo = [("a", "web"), ("b", "cli"), ("c", "data"), ("d", None)]
    assert queue_order(todo, {"cli"}) == ("a", "c", "d", "b")
    assert queue_order(todo, {"cli"}, ("web",)) == ("c", "d", "b", "a")


def test_a_strategy_survives_its_record() -> None:
    """`strategy_from(s.as_dict())` is `s`; its line names each change."""
    strategy = Strategy(paused=("other",), back_domains=("web",), ranker_epochs=2.0)
    assert strategy_from(strategy.as_dict()) == strategy
    assert strategy.text == "paused other; domains last web; ranker epochs 2"


def test_the_ranker_trainer_takes_the_strategys_epochs(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranker's trainer passes the strategy's epochs to `train_ranker` (None: [ranker])."""
    seen: list[float | None] = []

    def fake(_ws: Workspace, options: Any) -> Any:
        seen.append(options.epochs)
        return SimpleNamespace(version=SimpleNamespace(ref=f"{RANKER}@v1"))

    monkeypatch.setattr(loop_steps, "train_ranker", fake)
    for epochs in (3.0, None):
        loop_steps.train_ranker_kind(workspace, None, RANKER, Strategy(ranker_epochs=epochs))
    assert seen == [3.0, None]


@pytest.fixture
def ws(workspace: Workspace, tiny_model_dir: Path) -> Workspace:
    """A workspace whose base model is the tiny model, with a dataset."""
    return model_workspace(workspace, tiny_model_dir)


def _planned(_ctx: StepContext) -> StepResult:
    return StepResult("done", None, {}, {"dataset": "toy-1", "adapters": "scope,other"})


def _two_adapter_steps(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, extra: tuple[FunctionStep, ...] = ()
) -> tuple[Any, ...]:
    """A planted plan naming `scope` and `other`, the real train step with a trainer that
    registers real random-weight candidates (only `scope`'s with an eval, so the gate
    refuses `other`), and the real promote step."""
    seeds = iter(range(1, 100))

    def trainer(workspace: Workspace, _dataset: str | None, adapter: str, _s: Strategy) -> str:
        number = candidate(workspace, tmp, seed=next(seeds), name=adapter)
        if adapter == "scope":
            planted_eval(workspace, number, [1.0, 0.0] * 8)
        return f"{adapter}@v{number}"

    monkeypatch.setitem(loop_steps.TRAINERS, "lora", trainer)
    train, promote = (s for s in DEFAULT_STEPS if s.name in ("train", "promote"))
    return (FunctionStep("plan", _planned), *extra, train, promote)


def _trained(workspace: Workspace, cycle: int) -> list[str]:
    rec = recorded(workspace)
    row = next(s for s in rec.steps if s.step == "train" and s.cycle == cycle)
    return [r.split("@")[0] for r in row.outputs["candidates"].split(",")]


def test_meta_every_cycle_rewrites_the_strategy_and_the_next_train_obeys(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With meta_every=1, cycle 1 promotes `scope` and not `other`: the meta event records
    old, new and why, cycle 2's train step trains `scope` only, and status and the report
    show the strategy and its change."""
    steps = _two_adapter_steps(monkeypatch, tmp_path)
    outcome = start_loop(ws, {"meta_every": 1, "max_cycles": 2, "patience": 5}, steps=steps)
    assert outcome.reason is StopReason.MAX_CYCLES
    meta = [e for e in recorded(ws).events if e.kind == "meta"]
    first = meta[0].payload
    assert first["old"] == Strategy().as_dict()
    assert first["new"]["paused"] == ["other"]
    assert first["why"] == ["paused other: no promotion in cycles 1 while scope was promoted"]
    assert first["cycles"] == [1] and first["promoted"] == 1
    assert _trained(ws, 1) == ["scope", "other"]
    assert _trained(ws, 2) == ["scope"]
    train2 = next(s for s in recorded(ws).steps if s.step == "train" and s.cycle == 2)
    assert (train2.reason or "").startswith("other paused by the loop's strategy")
    status = loop_status(ws)
    assert status is not None and status.strategy.paused == ("other",)
    assert [m.new.paused for m in status.meta] == [("other",)]
    report = outcome.report_md.read_text()
    assert "Final: paused other." in report
    assert "- after cycles 1: default (train what the plan plans, queue as listed) -> " in report


def test_a_resumed_loop_carries_the_strategy_on(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop stopped in cycle 2 before its train step resumes with the strategy its last
    meta event recorded: the re-run train step still leaves `other` out."""
    marker = ws.root / "halted"

    def halt(ctx: StepContext) -> StepResult:
        if ctx.cycle == 2 and not marker.exists():
            marker.write_text("once")
            ws.stop_path.write_text("")
            for _ in range(100):
                ctx.checkpoint()
                time.sleep(0.1)
        return StepResult("done")

    steps = _two_adapter_steps(monkeypatch, tmp_path, (FunctionStep("halt", halt),))
    limits = {"meta_every": 1, "max_cycles": 2, "patience": 5}
    assert start_loop(ws, limits, steps=steps).reason is StopReason.KILL_SWITCH
    with closing(ws.raw_db()) as conn:
        run = store.latest_run(conn)
    assert run is not None
    assert current_strategy(ws, run.id).paused == ("other",)
    ws.stop_path.unlink()
    assert resume_loop(ws, steps=steps).reason is StopReason.MAX_CYCLES
    assert _trained(ws, 2) == ["scope"]
