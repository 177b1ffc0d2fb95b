"""The steps of one cycle, each a call of an existing service function.

A step is anything with a `name` and `run(ctx) -> StepResult`: the cycle is a tuple of
them (:data:`DEFAULT_STEPS`), so a step can be replaced or added without touching the
loop. A step whose preconditions are not met (no repository, no base model, not enough
data) returns `skipped` with the reason; one that breaks raises, and the loop records it
as failed. Steps with several units of work (adapters) call `ctx.checkpoint()` between
them, the safe points where a stop or a cycle's time limit cuts them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from cra.adapters.evaluate import evaluate
from cra.adapters.lifecycle import (
    Move,
    PromotionRefused,
    automatic_rollback,
    check,
    promote,
    promotion,
    rejection,
)
from cra.adapters.names import name_kind
from cra.adapters.registry import (
    Version,
    active_version,
    adapter_names,
    get_version,
    parse_versioned,
    verify_files,
)
from cra.artefacts import base_model_dir
from cra.curation.curate import curate
from cra.curation.plan import EmptyDatabase, NotEnoughData, build_plan, write_plan
from cra.db.commits import funnel_counts
from cra.errors import CraError, UsageError
from cra.harness.mine import mine_repo
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness
from cra.harness.validate import ValidateOptions, validate_repo
from cra.loop.limits import Limits
from cra.loop.strategy import Strategy
from cra.ranker.base import ranker_base_dir
from cra.ranker.evaluate import evaluate_ranker
from cra.ranker.train import RankerTrainOptions, train_ranker
from cra.ranker_rows import RANKER_ADAPTER
from cra.training.train import TrainOptions, train_adapter
from cra.workspace import Workspace


@dataclass(frozen=True)
class StepResult:
    """How a step ended: done or skipped (with why), what it counted, and the outputs
    later steps of the cycle read (a plan path, a dataset id, candidate refs)."""

    status: str
    reason: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)


def skipped(reason: str) -> StepResult:
    """A step whose preconditions are not met."""
    return StepResult("skipped", reason)


@dataclass(frozen=True)
class StepContext:
    """What a step may use: the workspace, the limits, the cycle, its repository, the
    outputs of the cycle's earlier steps, the safe point to call between units, the
    loop's strategy (which adapters are paused, the ranker's epochs) and when the cycle
    started (an ISO time kept across a resume; None outside a loop)."""

    workspace: Workspace
    limits: Limits
    cycle: int
    repo: str | None
    queue: tuple[str, ...]
    pivot: bool
    earlier: Mapping[str, str]
    checkpoint: Callable[[], None]
    echo: Callable[[str], None]
    strategy: Strategy = field(default_factory=Strategy)
    cycle_since: str | None = None


class Step(Protocol):
    """One step of a cycle."""

    @property
    def name(self) -> str:
        """The step's name, as the loop records it."""
        ...

    def run(self, ctx: StepContext) -> StepResult:
        """Do the step's work (see :class:`StepResult`)."""
        ...


@dataclass(frozen=True)
class FunctionStep:
    """A step made of a name and a function."""

    name: str
    function: Callable[[StepContext], StepResult]

    def run(self, ctx: StepContext) -> StepResult:
        """Call the function."""
        return self.function(ctx)


def _refs(text: str | None) -> list[str]:
    return [r for r in (text or "").split(",") if r]


def ingest(ctx: StepContext) -> StepResult:
    """Mine the cycle's repository for new commits, or the next one of the queue when
    there is none yet or the loop pivots."""
    repo = ctx.repo
    if repo is None or ctx.pivot:
        if not ctx.queue:
            if repo is None:
                return skipped("no repository to mine: pack or import one (cra repo pack)")
        else:
            repo = ctx.queue[0]
    if repo is None:
        return skipped("no repository to mine")
    result = mine_repo(ctx.workspace, repo)
    counts = {"seen": result.seen, "new": result.new, "qualified": result.qualified}
    return StepResult("done", f"mined {repo}", counts, {"repo": repo, "new": str(result.new)})


def harness(ctx: StepContext) -> StepResult:
    """Plan new tasks with the baseline planner, then validate them (both --limit
    tasks_per_cycle; none when it is 0)."""
    repo = ctx.earlier.get("repo") or ctx.repo
    if repo is None:
        return skipped("no repository mined")
    if ctx.limits.tasks_per_cycle == 0:
        return skipped("tasks_per_cycle is 0: no tasks planned or validated")
    with closing(ctx.workspace.raw_db()) as conn:
        if not funnel_counts(conn, repo):
            return skipped(f"{repo} is not mined")
    limit = ctx.limits.tasks_per_cycle
    planned = run_harness(ctx.workspace, repo, RunOptions(planner="baseline", limit=limit))
    ctx.checkpoint()
    checked = validate_repo(ctx.workspace, repo, ValidateOptions(limit=limit))
    counts = {
        "planned": planned.tasks_done,
        "plans": planned.plans,
        "validated": checked.tasks_done,
        **{f"verdict_{k}": int(v) for k, v in checked.verdicts.items()},
    }
    return StepResult("done", None, counts, {"tasks": str(checked.tasks_done)})


def plan(ctx: StepContext) -> StepResult:
    """Write a training plan (`cra train-plan`); skipped when the data is not enough."""
    try:
        made = build_plan(ctx.workspace)
    except (EmptyDatabase, NotEnoughData) as exc:
        return skipped(str(exc))
    path = write_plan(ctx.workspace.planning_dir, made)
    chosen = [a["name"] for a in made.get("adapters", []) if a.get("train")]
    if not chosen:
        return skipped("the plan trains no adapter")
    counts = {"adapters": len(chosen)}
    return StepResult("done", None, counts, {"plan": str(path), "adapters": ",".join(chosen)})


def curate_step(ctx: StepContext) -> StepResult:
    """Curate the plan's dataset, with replay from earlier ones (`cra curate-data`)."""
    plan_path = ctx.earlier.get("plan")
    if not plan_path:
        return skipped("no training plan this cycle")
    result = curate(ctx.workspace, Path(plan_path), None)
    card: dict[str, Any] = result.card
    counts = {
        "train_rows": int(card["counts"]["train"]["rows"]),
        "eval_rows": int(card["counts"]["eval"]["rows"]),
        "replayed": int(card["replay"]["rows"]),
    }
    return StepResult("done", None, counts, {"dataset": result.dataset_id})


Trainer = Callable[[Workspace, str | None, str, Strategy], str]
"""Trains one adapter on a dataset from the frozen base: (workspace, dataset or None for
the mined history, adapter, the loop's strategy) -> the candidate's ref."""


def train_lora(
    workspace: Workspace, dataset_id: str | None, adapter: str, _strategy: Strategy
) -> str:
    """The default trainer: `train_adapter` (QLoRA SFT from the frozen base)."""
    if dataset_id is None:
        raise UsageError(f"{adapter} trains on a dataset only")
    result = train_adapter(workspace, TrainOptions(dataset_id=dataset_id, adapter=adapter))
    return result.version.ref


def train_ranker_kind(
    workspace: Workspace, dataset_id: str | None, adapter: str, strategy: Strategy
) -> str:
    """The trainer of the ranker kind (`scope-ranker`): `train_ranker` on the dataset, or
    on every mined repository's history (its holdout left out) without one, for the
    strategy's epochs (None: `[ranker] epochs`)."""
    options = RankerTrainOptions(
        adapter=adapter, dataset_id=dataset_id, epochs=strategy.ranker_epochs
    )
    result = train_ranker(workspace, options)
    return result.version.ref


TRAINERS: dict[str, Trainer] = {"lora": train_lora, "ranker": train_ranker_kind}
"""The trainer of each adapter kind (:func:`cra.adapters.names.name_kind`)."""


def history_ranker(ctx: StepContext) -> str | None:
    """Why the ranker is not trained on the mined history this cycle, or None when it
    is: that needs mined commits and a ranker base, and something new since the active
    version (commits mined this cycle, a mined repository it was not trained on, or an
    active version trained on a dataset instead); a cycle that mined nothing has nothing
    new."""
    try:
        ranker_base_dir(ctx.workspace.config.settings.ranker.base, ctx.workspace.root)
    except CraError as exc:
        return f"{exc} ([ranker] base)"
    with closing(ctx.workspace.raw_db()) as conn:
        mined = {row.repo for row in funnel_counts(conn, None)}
        active = active_version(conn, ctx.workspace.root, RANKER_ADAPTER)
    if not mined:
        return "no mined commits to train the ranker on"
    if active is not None and active.dataset_id is None and ctx.earlier.get("new", "0") == "0":
        covered = set(active.hyperparams.get("repos") or ())
        if mined <= covered:
            return f"nothing mined since {active.ref} was trained on the same history"
    return None


def _jobs(ctx: StepContext) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(adapter, dataset or None) to train this cycle, and why others are left out: the
    plan's adapters on its dataset (LoRA ones only with `[model] base`), and the ranker
    on the mined history when the plan does not name it; none the strategy pauses."""
    dataset = ctx.earlier.get("dataset")
    named = _refs(ctx.earlier.get("adapters")) if dataset else []
    notes = [] if dataset else ["no curated dataset this cycle for the adapters trained on one"]
    notes += [f"{a} paused by the loop's strategy" for a in ctx.strategy.paused]
    named = [a for a in named if a not in ctx.strategy.paused]
    if any(name_kind(a) == "lora" for a in named):
        try:
            base_model_dir(ctx.workspace.config.settings.model.base, ctx.workspace.root)
        except CraError as exc:
            notes.append(f"{exc} ([model] base)")
            named = [a for a in named if name_kind(a) != "lora"]
    jobs: list[tuple[str, str | None]] = [(a, dataset) for a in named]
    if RANKER_ADAPTER not in named and RANKER_ADAPTER not in ctx.strategy.paused:
        why = history_ranker(ctx)
        if why is None:
            jobs.append((RANKER_ADAPTER, None))
        else:
            notes.append(why)
    return jobs, notes


def train(ctx: StepContext) -> StepResult:
    """Train a candidate of each adapter the plan names, with its kind's trainer (a LoRA
    adapter needs `[model] base`), and of the ranker on the mined history when the plan
    names none (see :func:`history_ranker`); skipped, saying why, when there is nothing."""
    jobs, notes = _jobs(ctx)
    if not jobs:
        return skipped("; ".join(notes))
    candidates = []
    for adapter, dataset in jobs:
        ctx.checkpoint()
        trainer = TRAINERS.get(name_kind(adapter))
        if trainer is None:
            ctx.echo(f"no trainer for {adapter} ({name_kind(adapter)}): left out")
            continue
        try:
            candidates.append(trainer(ctx.workspace, dataset, adapter, ctx.strategy))
        except UsageError as exc:
            if dataset is not None:
                raise
            notes.append(f"{adapter} not trained on the mined history: {exc}")
            continue
        ctx.echo(f"trained {candidates[-1]}" + ("" if dataset else " on the mined history"))
    if not candidates:
        return skipped("; ".join(notes) or "no candidate trained")
    return StepResult(
        "done",
        "; ".join(notes) or None,
        {"candidates": len(candidates)},
        {"candidates": ",".join(candidates)},
    )


def on_holdout_of(active: Version, candidate: Version) -> Version:
    """`active` as the ranker's evaluation reads it, with `candidate`'s holdout: its
    dataset, or for a ranker trained on the mined history its repositories and holdout
    share, so the active version is scored on the candidate's (grown) holdout."""
    keys = ("repos", "holdout_share")
    held = {k: candidate.hyperparams[k] for k in keys if k in candidate.hyperparams}
    return replace(
        active, dataset_id=candidate.dataset_id, hyperparams={**active.hyperparams, **held}
    )


def _evaluate_active(ctx: StepContext, ref: str, result: Mapping[str, Any]) -> int:
    """Evaluate the active version of `ref`'s adapter on the holdout `result` was
    measured on, unless it already has been; how many evaluations that took."""
    name, number = parse_versioned(ref)
    with closing(ctx.workspace.raw_db()) as conn:
        active = active_version(conn, ctx.workspace.root, name)
        candidate = get_version(conn, ctx.workspace.root, name, number)
    if active is None or active.version == number or result["holdout"] in active.eval_metrics:
        return 0
    ctx.checkpoint()
    if active.kind == "ranker":
        verify_files(active)
        evaluate_ranker(ctx.workspace, on_holdout_of(active, candidate))
    else:
        evaluate(ctx.workspace, active.ref, dataset_id=result["dataset_id"])
    return 1


def evaluate_step(ctx: StepContext) -> StepResult:
    """Evaluate each candidate, and the active version on the same holdout (for a ranker
    on the mined history, the holdout grows with each repository: the active version is
    scored on the new one too, so the gate compares the same examples)."""
    refs = _refs(ctx.earlier.get("candidates"))
    if not refs:
        return skipped("no candidates this cycle")
    evaluated = 0
    for ref in refs:
        ctx.checkpoint()
        result = evaluate(ctx.workspace, ref)
        evaluated += 1 + _evaluate_active(ctx, ref, result)
    return StepResult("done", None, {"evaluated": evaluated})


def not_improved(details: Mapping[str, Any]) -> str | None:
    """Why a promotion the gate passed is no improvement (no primary metric rose beyond
    its noise floor), or None when it is one; with nothing to compare against (a first
    version without base metrics) it is one. Metrics are named in sorted order, so the
    registry's stored copy of `details` gives the same text."""
    metrics: Mapping[str, Mapping[str, float]] = details.get("metrics") or {}
    if not metrics or any(m["delta"] > m["noise_floor"] for m in metrics.values()):
        return None
    within = ", ".join(
        f"{name} {m['delta']:+.3f} (floor {m['noise_floor']:.3f})"
        for name, m in sorted(metrics.items())
    )
    against = details.get("against")
    return f"no primary metric rose beyond the noise floor against {against}: {within}"


def _promote_once(workspace: Workspace, ref: str) -> Move:
    """Promote `ref` through the gate; when it was already promoted or rejected (by this
    step, before a crash cut it), return that promotion or raise that refusal again."""
    done = promotion(workspace, ref)
    if done is not None:
        return done
    refused = rejection(workspace, ref)
    if refused is not None:
        raise refused
    return promote(workspace, ref, reason="cra loop: passed the gate")


def promote_step(ctx: StepContext) -> StepResult:
    """Promote each candidate through the gate, or record why it was rejected; only a
    promotion whose primary metric rose beyond the noise floor counts as `improved`. A
    candidate this step already promoted or rejected (before a crash) counts as it did."""
    refs = _refs(ctx.earlier.get("candidates"))
    if not refs:
        return skipped("no candidates this cycle")
    promoted, improved, rejected, reasons = [], [], 0, []
    for ref in refs:
        ctx.checkpoint()
        try:
            move = _promote_once(ctx.workspace, ref)
        except PromotionRefused as exc:
            rejected += 1
            reasons.append(str(exc))
            continue
        promoted.append(ref)
        why = not_improved(move.details or {})
        if why is None:
            improved.append(ref)
        else:
            reasons.append(f"{ref} promoted, but not an improvement: {why}")
    counts = {"promoted": len(promoted), "rejected": rejected}
    outputs = {"promoted": ",".join(promoted), "improved": ",".join(improved)}
    return StepResult("done", "; ".join(reasons) or None, counts, outputs)


def _rolled_this_cycle(ctx: StepContext, names: list[str]) -> set[str]:
    """Those of `names` a check already rolled back this cycle (before a crash cut the
    step), each echoed with the rollback's reason."""
    if ctx.cycle_since is None:
        return set()
    rolled = set()
    for name in names:
        move = automatic_rollback(ctx.workspace, name, ctx.cycle_since)
        if move is not None:
            rolled.add(name)
            ctx.echo(f"{name} already rolled back this cycle: {move.reason}")
    return rolled


def check_step(ctx: StepContext) -> StepResult:
    """Compare every active version's live metrics with its eval; a regression rolls back.
    An adapter this cycle's check already rolled back (before a crash) counts as rolled
    back again, with no second check."""
    with closing(ctx.workspace.raw_db()) as conn:
        every = adapter_names(conn)
        active = {n for n in every if active_version(conn, ctx.workspace.root, n) is not None}
    done = _rolled_this_cycle(ctx, every)
    names = [n for n in every if n in active or n in done]
    if not names:
        return skipped("no active version to check")
    rolled = []
    for name in names:
        ctx.checkpoint()
        if name in done or check(ctx.workspace, name, echo=ctx.echo) is not None:
            rolled.append(name)
    return StepResult(
        "done",
        None,
        {"checked": len(names), "rolled_back": len(rolled)},
        {"rolled_back": ",".join(rolled)},
    )


DEFAULT_STEPS: tuple[Step, ...] = (
    FunctionStep("ingest", ingest),
    FunctionStep("harness", harness),
    FunctionStep("plan", plan),
    FunctionStep("curate", curate_step),
    FunctionStep("train", train),
    FunctionStep("evaluate", evaluate_step),
    FunctionStep("promote", promote_step),
    FunctionStep("check", check_step),
)
"""The cycle: ingest, harness, plan, curate, train, evaluate, promote, check."""
