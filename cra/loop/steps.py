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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cra.adapters.evaluate import evaluate
from cra.adapters.lifecycle import PromotionRefused, check, promote
from cra.adapters.names import name_kind
from cra.adapters.registry import active_version, adapter_names, parse_versioned
from cra.artefacts import base_model_dir
from cra.curation.curate import curate
from cra.curation.plan import EmptyDatabase, NotEnoughData, build_plan, write_plan
from cra.db.commits import funnel_counts
from cra.errors import CraError
from cra.harness.mine import mine_repo
from cra.harness.planning import RunOptions
from cra.harness.run import run_harness
from cra.harness.validate import ValidateOptions, validate_repo
from cra.loop.limits import Limits
from cra.ranker.train import RankerTrainOptions, train_ranker
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
    outputs of the cycle's earlier steps and the safe point to call between units."""

    workspace: Workspace
    limits: Limits
    cycle: int
    repo: str | None
    queue: tuple[str, ...]
    pivot: bool
    earlier: Mapping[str, str]
    checkpoint: Callable[[], None]
    echo: Callable[[str], None]


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
    return StepResult("done", f"mined {repo}", counts, {"repo": repo})


def harness(ctx: StepContext) -> StepResult:
    """Plan new tasks with the baseline planner, then validate them (both --limit
    tasks_per_cycle)."""
    repo = ctx.earlier.get("repo") or ctx.repo
    if repo is None:
        return skipped("no repository mined")
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
    return StepResult("done", None, counts)


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


Trainer = Callable[[Workspace, str, str], str]
"""Trains one adapter on a dataset from the frozen base: (workspace, dataset, adapter)
-> the candidate's ref."""


def train_lora(workspace: Workspace, dataset_id: str, adapter: str) -> str:
    """The default trainer: `train_adapter` (QLoRA SFT from the frozen base)."""
    result = train_adapter(workspace, TrainOptions(dataset_id=dataset_id, adapter=adapter))
    return result.version.ref


def train_ranker_kind(workspace: Workspace, dataset_id: str, adapter: str) -> str:
    """The trainer of the ranker kind (`scope-ranker`): `train_ranker` on the dataset."""
    result = train_ranker(workspace, RankerTrainOptions(adapter=adapter, dataset_id=dataset_id))
    return result.version.ref


TRAINERS: dict[str, Trainer] = {"lora": train_lora, "ranker": train_ranker_kind}
"""The trainer of each adapter kind (:func:`cra.adapters.names.name_kind`)."""


def train(ctx: StepContext) -> StepResult:
    """Train a candidate of each adapter the plan names, with its kind's trainer (a LoRA
    adapter needs `[model] base`; the ranker has its own base)."""
    dataset = ctx.earlier.get("dataset")
    if not dataset:
        return skipped("no dataset this cycle")
    adapters = _refs(ctx.earlier.get("adapters"))
    if any(name_kind(a) == "lora" for a in adapters):
        try:
            base_model_dir(ctx.workspace.config.settings.model.base, ctx.workspace.root)
        except CraError as exc:
            return skipped(f"{exc} ([model] base)")
    candidates = []
    for adapter in adapters:
        ctx.checkpoint()
        trainer = TRAINERS.get(name_kind(adapter))
        if trainer is None:
            ctx.echo(f"no trainer for {adapter} ({name_kind(adapter)}): left out")
            continue
        candidates.append(trainer(ctx.workspace, dataset, adapter))
        ctx.echo(f"trained {candidates[-1]}")
    return StepResult(
        "done", None, {"candidates": len(candidates)}, {"candidates": ",".join(candidates)}
    )


def evaluate_step(ctx: StepContext) -> StepResult:
    """Evaluate each candidate and the active version on the same holdout."""
    refs = _refs(ctx.earlier.get("candidates"))
    if not refs:
        return skipped("no candidates this cycle")
    evaluated = 0
    for ref in refs:
        ctx.checkpoint()
        result = evaluate(ctx.workspace, ref)
        evaluated += 1
        name, _ = parse_versioned(ref)
        with closing(ctx.workspace.raw_db()) as conn:
            active = active_version(conn, ctx.workspace.root, name)
        if active is not None and result["holdout"] not in active.eval_metrics:
            ctx.checkpoint()
            evaluate(ctx.workspace, active.ref, dataset_id=result["dataset_id"])
            evaluated += 1
    return StepResult("done", None, {"evaluated": evaluated})


def promote_step(ctx: StepContext) -> StepResult:
    """Promote each candidate through the gate, or record why it was rejected."""
    refs = _refs(ctx.earlier.get("candidates"))
    if not refs:
        return skipped("no candidates this cycle")
    promoted, rejected, reasons = [], 0, []
    for ref in refs:
        ctx.checkpoint()
        try:
            promote(ctx.workspace, ref, reason="cra loop: passed the gate")
            promoted.append(ref)
        except PromotionRefused as exc:
            rejected += 1
            reasons.append(str(exc))
    counts = {"promoted": len(promoted), "rejected": rejected}
    return StepResult("done", "; ".join(reasons) or None, counts, {"promoted": ",".join(promoted)})


def check_step(ctx: StepContext) -> StepResult:
    """Compare every active version's live metrics with its eval; a regression rolls back."""
    with closing(ctx.workspace.raw_db()) as conn:
        names = [
            n
            for n in adapter_names(conn)
            if active_version(conn, ctx.workspace.root, n) is not None
        ]
    if not names:
        return skipped("no active version to check")
    rolled = []
    for name in names:
        ctx.checkpoint()
        move = check(ctx.workspace, name, echo=ctx.echo)
        if move is not None:
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
