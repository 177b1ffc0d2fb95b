"""`cra demo`: the whole flow on a bundled sample repository, step by step.

The sample is the `tally` project that `cra.fixtures.history` builds: a real git history
of a small Python package with bug fixes and their tests, refactors, docs and noise.
Each step says what it did; re-running reuses what exists.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from cra.db import schema_version
from cra.db.logs import LogAnalysis
from cra.db.plans import alignments
from cra.fsutil import atomic_write_text
from cra.report.build import write_report
from cra.sandbox import require_sandbox
from cra.workspace import Workspace, init_workspace

Echo = Callable[[str], None]

SAMPLE_NAME = "tally"


def sample_source(root: Path) -> Path:
    """Where the demo keeps the sample repository's source checkout."""
    return root / "sources" / SAMPLE_NAME


def _build_sample(root: Path, echo: Echo) -> Path:
    from cra.fixtures.history import build_project_repo

    source = sample_source(root)
    if (source / ".git").exists():
        echo(f"  sample repository already at {source}")
        return source
    source.parent.mkdir(parents=True, exist_ok=True)
    repo = build_project_repo(source, extra_commits=60, maintenance_every=3)
    echo(f"  built sample repository {source}: {len(repo.commits)} commits")
    return source


def _show_databases(workspace: Workspace, echo: Echo) -> None:
    with closing(workspace.raw_db()) as raw:
        version = schema_version(raw)
        every = LogAnalysis(raw).counts()
        counts = {table: every[table] for table in ("repos", "commits", "tasks")}
    with closing(workspace.curated_db()) as curated:
        curated_version = schema_version(curated)
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    echo(f"  raw.db schema v{version}: {summary}")
    echo(f"  curated.db schema v{curated_version}")


def _pack_sample(workspace: Workspace, source: Path, echo: Echo) -> None:
    """`cra repo pack` the sample, from a local wheelhouse when the wheels can be made."""
    from cra.errors import CraError
    from cra.fixtures.wheelhouse import build_wheelhouse
    from cra.repos.pack import PackOptions, pack

    if (workspace.repos_dir / SAMPLE_NAME / "manifest.json").exists():
        echo(f"  repos/{SAMPLE_NAME} already packed")
        return
    wheelhouse = workspace.root / "sources" / "wheelhouse"
    wheels: Path | None = wheelhouse
    try:
        build_wheelhouse(wheelhouse)
        echo(f"  wheelhouse of pytest and friends at {wheelhouse} (rebuilt from installed copies)")
    except CraError as exc:
        echo(f"  no local wheelhouse ({exc}); resolving from the package index")
        wheels = None
    result = pack(
        workspace,
        str(source),
        PackOptions(name=SAMPLE_NAME, find_links=wheels, domain="demo"),
    )
    manifest = result.manifest
    echo(
        f"  packed repos/{SAMPLE_NAME}: {result.commits} commits, "
        f"{len(manifest.environments)} environment(s), {len(manifest.wheels)} wheels "
        f"in {result.seconds:.1f} s"
    )


def _build_sample_env(workspace: Workspace, echo: Echo) -> None:
    from cra.env.build import build_env

    built = build_env(workspace, SAMPLE_NAME)
    state = "reused" if built.cached else f"built in {built.seconds:.1f} s with {built.installer}"
    echo(f"  environment {built.env_id} ({built.mode}): {state}, no network")


def _mine(workspace: Workspace, echo: Echo) -> None:
    from cra.harness.mine import mine_repo
    from cra.harness.stages import STAGES

    result = mine_repo(workspace, SAMPLE_NAME)
    data = result.as_dict()
    qualifying = f"{data['qualified']} qualifying ({data['yield_pct']}%)"
    echo(f"  {data['commits_in']} commits in, {qualifying}")
    for stage in STAGES:
        top = result.reasons.get(stage, Counter()).most_common(5)
        reasons = ", ".join(f"{r} ×{c}" for r, c in top)
        echo(f"  dropped at {stage:<10} {result.dropped.get(stage, 0):>4}  {reasons}")


def _plan(workspace: Workspace, echo: Echo) -> None:
    from cra.harness.planning import RunOptions
    from cra.harness.run import run_harness

    summary = run_harness(workspace, SAMPLE_NAME, RunOptions(planner="baseline"))
    with closing(workspace.raw_db()) as raw:
        values = alignments(raw, "baseline")
    echo(f"  planned {summary.tasks_done} tasks ({summary.tasks_skipped} already done)")
    if values:
        q = [values[int(f * (len(values) - 1))] for f in (0, 0.25, 0.5, 0.75, 1)]
        echo("  alignment min/q1/median/q3/max: " + " / ".join(f"{v:.2f}" for v in q))


def _validate(workspace: Workspace, echo: Echo) -> None:
    from cra.harness.validate import ValidateOptions, validate_repo

    summary = validate_repo(workspace, SAMPLE_NAME, ValidateOptions(jobs=2))
    latest = summary.latest
    echo(
        f"  validated {summary.tasks_done} tasks ({summary.tasks_skipped} already done) "
        f"under {summary.isolation} in {summary.seconds:.1f} s"
    )
    echo(
        f"  verified: {latest.get('verified', 0)} of {sum(latest.values())} "
        "qualifying commits have a test that fails before and passes after; "
        + ", ".join(f"{v} ×{n}" for v, n in sorted(latest.items()))
    )


def _curate(workspace: Workspace, echo: Echo) -> None:
    from cra.curation.curate import curate
    from cra.curation.plan import build_plan, write_plan
    from cra.fsutil import atomic_write_text
    from cra.workspace import open_workspace

    existing = sorted(workspace.datasets_dir.glob("demo-*/card.json"))
    if existing:
        echo(f"  dataset {existing[-1].parent.name} already written")
        return
    config = workspace.root / "cra.toml"
    text = config.read_text(encoding="utf-8")
    if "\nmin_examples = 20\n" in text:  # the sample has a few dozen tasks, not thousands
        atomic_write_text(config, text.replace("\nmin_examples = 20\n", "\nmin_examples = 10\n"))
        workspace = open_workspace(workspace.root)
        echo("  a small sample: [curate] min_examples lowered to 10 in cra.toml")
    plan = build_plan(workspace)
    path = write_plan(workspace.planning_dir, plan, workspace.planning_dir / "demo-plan.json")
    echo(f"  plan {path.relative_to(workspace.root)}: holdout from {plan['holdout']['boundary']}")
    for entry in plan["adapters"]:
        counts = ", ".join(
            "{} {}/{}".format(t["technique"], *t["estimated_examples"].values())
            for t in entry["techniques"]
        )
        verdict = "train" if entry["train"] else "skip "
        echo(f"  {verdict} {entry['name']:<13} rows train/eval {counts}")
        if not entry["train"]:
            echo(f"        {entry['reason']}")
    for warning in plan["warnings"]:
        echo(f"  warning: {warning}")
    result = curate(workspace, path, "demo-1")
    card = result.card
    train, held = card["counts"]["train"], card["counts"]["eval"]
    echo(
        f"  dataset training/datasets/{result.dataset_id}: {train['rows']} train rows, "
        f"{held['rows']} eval rows ({', '.join(sorted(train['by_group']))})"
    )
    dropped = ", ".join(f"{f['filter'].split(' (')[0]} {f['dropped']}" for f in card["filters"])
    echo(f"  filters dropped: {dropped}")


DEMO_DATASET = "toy-scope"
DEMO_ADAPTER = "scope"


def _set_config(workspace: Workspace, section: str, values: dict[str, str]) -> Workspace:
    """Set keys of one `cra.toml` section (TOML literals), written atomically; return the
    workspace reopened with them, or as it was when they already hold those values."""
    from cra.config import render_value
    from cra.workspace import open_workspace

    values_now = workspace.config.values
    changed = {
        key: literal
        for key, literal in values.items()
        if render_value(values_now[f"{section}.{key}"]) != literal
    }
    if not changed:
        return workspace
    config = workspace.root / "cra.toml"
    head, _, rest = config.read_text(encoding="utf-8").partition(f"[{section}]\n")
    body, sep, tail = rest.partition("\n[")
    added = ""
    for key, literal in changed.items():
        # The value changes in place, so the key's comment stays directly above it; a key
        # the file lacks comes first in the section, under its own comment.
        found = re.search(rf"(?m)^{re.escape(key)}\s*=.*$", body)
        if found:
            body = f"{body[: found.start()]}{key} = {literal}{body[found.end() :]}"
        else:
            added += f"# {_setting_help(section, key)}\n{key} = {literal}\n"
    atomic_write_text(config, f"{head}[{section}]\n{added}{body}{sep}{tail}")
    return open_workspace(workspace.root)


def _setting_help(section: str, key: str) -> str:
    from cra.settings_table import SETTINGS

    return next(s.help for s in SETTINGS if (s.section, s.key) == (section, key))


def _demo_model(workspace: Workspace, echo: Echo) -> Workspace:
    """Build the tiny model under sources/ once and name it as `[model] base`."""
    from cra.config import render_value
    from cra.fixtures.model import build_tiny_model

    model = workspace.root / "sources" / "model"
    if not (model / "config.json").is_file():
        # A wider initializer than the default lets LoRA memorise the toy answers.
        build_tiny_model(model, init_std=0.2)
        echo(f"  built a tiny Qwen2 model at {model} (random weights, trained BPE tokenizer)")
    if workspace.config.settings.model.base != str(model):
        workspace = _set_config(workspace, "model", {"base": render_value(str(model))})
        echo(f"  [model] base = {model}")
    return workspace


def _adapters(workspace: Workspace, echo: Echo) -> None:
    """Train two candidates, evaluate, promote, roll back, and show a refused one."""
    from cra.adapters.evaluate import evaluate
    from cra.adapters.lifecycle import PromotionRefused, promote, rollback
    from cra.adapters.registry import list_versions
    from cra.fixtures.datasets import write_dataset
    from cra.training.train import TrainOptions, train_adapter

    workspace = _demo_model(workspace, echo)
    with closing(workspace.raw_db()) as raw:
        existing = list_versions(raw, workspace.root, DEMO_ADAPTER)
    if existing:
        states = ", ".join(f"{v.ref} {v.status}" for v in existing)
        echo(f"  adapters already trained: {states}")
        return
    write_dataset(workspace, DEMO_DATASET, adapters=(DEMO_ADAPTER,))
    echo(f"  dataset {DEMO_DATASET}: a toy scope set with a chronological holdout")

    def train(steps: int, rate: float) -> str:
        result = train_adapter(
            workspace,
            TrainOptions(
                DEMO_DATASET, DEMO_ADAPTER, max_steps=steps, learning_rate=rate, batch_size=6
            ),
        )
        m = result.metrics
        loss = f"loss {m['first_loss']:.2f} -> {m['last_loss']:.2f}"
        speed = f"{m['tokens_per_s']:.0f} tokens/s ({result.backend}, 4-bit NF4 base)"
        echo(f"  cra train: {result.version.ref} candidate, {steps} steps, {loss}, {speed}")
        ref = result.version.ref
        metrics = evaluate(workspace, ref, max_new_tokens=16)
        recall = metrics["metrics"]["file_recall"]
        base_recall = metrics["base_metrics"]["file_recall"]
        echo(f"  cra adapter eval {ref}: file recall {recall:.2f} (base model {base_recall:.2f})")
        return ref

    first = train(24, 5e-3)
    move = promote(workspace, first)
    echo(f"  cra adapter promote {first}: active ({move.reason})")
    second = train(24, 5e-3)
    move = promote(workspace, second)
    echo(f"  cra adapter promote {second}: active, v{move.from_version} retired")
    move = rollback(workspace, DEMO_ADAPTER, reason="demo")
    kept = f"v{move.from_version} kept on disk"
    echo(f"  cra adapter rollback {DEMO_ADAPTER}: v{move.to_version} active again, {kept}")
    weak = train(1, 1e-5)
    try:
        promote(workspace, weak)
    except PromotionRefused as exc:
        echo(f"  cra adapter promote {weak}: refused, {exc}")


def _ranker(workspace: Workspace, echo: Echo) -> None:
    """Train a scope ranker on the curated dataset's ranker rows (the packaged MiniLM
    encoder, one epoch), evaluate it next to BM25 on the dataset's holdout, promote it."""
    import time

    from cra.adapters.evaluate import evaluate
    from cra.adapters.lifecycle import PromotionRefused, promote
    from cra.adapters.registry import list_versions
    from cra.datasets_store import get_dataset
    from cra.ranker.train import RankerTrainOptions, train_ranker
    from cra.ranker_rows import RANKER_ADAPTER, read_ranker_rows

    with closing(workspace.raw_db()) as raw:
        existing = list_versions(raw, workspace.root, RANKER_ADAPTER)
    if existing:
        echo("  rankers already trained: " + ", ".join(f"{v.ref} {v.status}" for v in existing))
        return
    with closing(workspace.raw_db()) as raw:
        dataset = get_dataset(raw, workspace.root, "demo-1")
    if not read_ranker_rows(dataset, "train") or not read_ranker_rows(dataset, "eval"):
        plan = json.loads((workspace.planning_dir / "demo-plan.json").read_text("utf-8"))
        entry = next(a for a in plan["adapters"] if a["name"] == RANKER_ADAPTER)
        echo(f"  skipped: dataset demo-1 holds no {RANKER_ADAPTER} rows ({entry['reason']})")
        return
    started = time.perf_counter()
    result = train_ranker(workspace, RankerTrainOptions(dataset_id="demo-1", epochs=1.0))
    m, ref = result.metrics, result.version.ref
    seconds = time.perf_counter() - started
    echo(
        f"  cra train --adapter {RANKER_ADAPTER} --dataset demo-1: {ref} candidate, "
        f"{m['steps']} steps, loss {m['first_loss']:.2f} -> {m['last_loss']:.2f}, "
        f"mix: {m['mix']}, {seconds:.0f} s"
    )
    report = evaluate(workspace, ref)
    ranked, bm25 = report["metrics"], report["bm25_metrics"]
    echo(
        f"  cra adapter eval {ref}: recall@5 {ranked['recall@5']:.2f} (BM25 "
        f"{bm25['recall@5']:.2f}), MRR {ranked['mrr']:.2f} (BM25 {bm25['mrr']:.2f}) "
        f"on {report['n']} held-out commits"
    )
    try:
        move = promote(workspace, ref)
        echo(f"  cra adapter promote {ref}: active ({move.reason})")
    except PromotionRefused as exc:
        echo(f"  cra adapter promote {ref}: refused, {exc}")


def _loop(workspace: Workspace, echo: Echo) -> None:
    """A short `cra loop` on the sample: at most four cycles, one task each, patience 2;
    without plan and curate (the dataset of [8] stands), so its train step fits the ranker
    on the mined history instead of four LoRA adapters per cycle."""
    from cra.db import loop as store
    from cra.loop.decisions import cycle_decisions
    from cra.loop.run import start_loop
    from cra.loop.steps import DEFAULT_STEPS

    with closing(workspace.raw_db()) as raw:
        last = store.latest_run(raw)
    if last is not None and last.status == "ended":
        run_id = last.id
        echo(f"  loop run {run_id} already ran: {last.stop_reason}")
    else:
        steps = tuple(s for s in DEFAULT_STEPS if s.name not in ("plan", "curate"))
        limits = {"max_cycles": 4, "patience": 2, "tasks_per_cycle": 1, "cycle_timeout_s": 900.0}
        outcome = start_loop(workspace, limits, steps=steps)
        run_id = outcome.run_id
        echo(f"  cra loop start: {outcome.reason.value} ({outcome.detail}), {outcome.report_md}")
    for decision in cycle_decisions(workspace, run_id):
        echo(f"  {decision.line()}")


DEMO_PROMPT = "Fix ZeroDivisionError in mean when the list is empty"


def _serve(workspace: Workspace, echo: Echo) -> None:
    """Serve the tiny model with its active adapters and send one request per stage."""
    from cra.serving.process import free_port
    from cra.serving.server import start_server, stop_server, vllm_python
    from cra.serving.state import running_state
    from cra.workspace import open_workspace

    workspace = open_workspace(workspace.root)  # with the settings earlier steps wrote
    python = vllm_python(workspace.config.settings.serve)
    if not python.exists():
        echo(f"  skipped: no vLLM interpreter at {python} (run `make vllm`, or set [serve] python)")
        return
    workspace = _demo_model(workspace, echo)
    # The tiny model is float32 and short; the CPU build's default dtype would cast it.
    workspace = _set_config(
        workspace, "serve", {"max_model_len": "1024", "extra_args": '["--dtype", "float32"]'}
    )
    state, server = running_state(workspace.serve_state_path), None
    if state is None:  # else a server the user started with `cra serve`: use it, leave it
        started = start_server(workspace, port=free_port(), echo=lambda m: echo(f"  {m}"))
        state, server = started.state, started.server
    echo(f"  cra serve: listening on {state.base_url}, loaded {', '.join(sorted(state.loaded))}")
    try:
        with closing(workspace.raw_db()) as raw:
            _ask_each_stage(workspace, state.base_url, state.served_model, raw, echo)
    finally:
        if server is not None:
            server.stop()
            stop_server(workspace)
            echo("  cra serve stop: stopped")


def _ask_each_stage(
    workspace: Workspace, base_url: str, served_model: str, raw: sqlite3.Connection, echo: Echo
) -> None:
    """One request per stage through the router; say which model answered each."""
    from cra.llm.client import LLMClient
    from cra.llm.routing import make_router
    from cra.settings_table import STAGES

    router = make_router(
        workspace.raw_db, workspace.serve_state_path, workspace.config.settings.stages
    )
    with LLMClient(endpoint=base_url, model=served_model, conn=raw, router=router) as client:
        for stage in STAGES:
            done = client.complete(
                stage=stage,
                messages=[{"role": "user", "content": DEMO_PROMPT}],
                max_tokens=8,
                temperature=0.0,
            )
            served = f"adapter {done.model}" if done.adapter else "the base model"
            logged = f"logged as llm_calls #{done.call_id}"
            echo(f"  {stage:<14} -> {served}, {done.completion_tokens} tokens, {logged}")


def run_demo(path: Path, *, echo: Echo) -> Workspace:
    """Run every demo step in a workspace at `path` and return the workspace."""
    echo(f"[1] workspace at {Path(path).absolute()}")
    report = init_workspace(path)
    workspace = report.workspace
    echo(f"  {'created ' + str(len(report.created)) + ' paths' if report.created else 'reused'}")
    # Step [7] runs tests sandboxed: with no sandbox the demo stops now, saying what to install.
    require_sandbox(workspace.config.settings.validate.sandbox_uid, allow_unsafe=False)
    echo("[2] sample repository")
    source = _build_sample(workspace.root, echo)
    echo("[3] pack it as a repo package (cra repo pack) and build its environment (cra env build)")
    _pack_sample(workspace, source, echo)
    _build_sample_env(workspace, echo)
    echo("[4] databases")
    _show_databases(workspace, echo)
    echo("[5] mine the history (cra harness mine)")
    _mine(workspace, echo)
    echo("[6] plan every qualifying commit with the baseline planner (cra harness run)")
    _plan(workspace, echo)
    echo("[7] validate them with their own tests, sandboxed (cra harness validate)")
    _validate(workspace, echo)
    echo("[8] training plan and dataset from the logs (cra train-plan, cra curate-data)")
    _curate(workspace, echo)
    echo(
        "[9] train adapters on the tiny model, evaluate, promote, roll back "
        "(cra train, cra adapter)"
    )
    _adapters(workspace, echo)
    echo(
        "[10] train the scope ranker on the curated dataset, evaluate it next to BM25, "
        "promote it (cra train --adapter scope-ranker, cra adapter)"
    )
    _ranker(workspace, echo)
    echo("[11] a short self-improvement loop: ingest, harness, train, gate (cra loop start)")
    _loop(workspace, echo)
    echo("[12] serve the tiny model with its active adapter; one request per stage (cra serve)")
    _serve(workspace, echo)
    echo("[13] the whole pipeline in one offline HTML file (cra report)")
    written = write_report(workspace)
    echo(f"report written to {written.path}")
    echo("done")
    return workspace
