"""What a loop did: `cra loop status`, `cra loop verify` and the final report
(`loop/report-RUN.md` and `.json` in the workspace, written atomically)."""

from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cra.adapters.registry import active_version
from cra.db import loop as store
from cra.db.llm_calls import tokens_since
from cra.fsutil import atomic_write_text
from cra.loop.limits import limits_from_record
from cra.loop.state import active_metrics, current_strategy
from cra.loop.strategy import Strategy, strategy_from
from cra.workspace import Workspace


@dataclass(frozen=True)
class Budget:
    """One limit: how much of it is used and how much is left."""

    name: str
    used: float
    limit: float

    @property
    def left(self) -> float:
        """What is left (0 when used up)."""
        return max(0.0, self.limit - self.used)


@dataclass(frozen=True)
class TargetState:
    """A target, the measured value (None: not measured) and whether it is met."""

    target: str
    measured: float | None
    met: bool


@dataclass(frozen=True)
class MetaChange:
    """One meta step: the cycles it compared, the strategy before and after, and why."""

    cycles: tuple[int, ...]
    old: Strategy
    new: Strategy
    why: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "cycles": list(self.cycles),
            "old": self.old.as_dict(),
            "new": self.new.as_dict(),
            "why": list(self.why),
        }


def meta_changes(events: list[store.LoopEvent]) -> tuple[MetaChange, ...]:
    """The meta steps among `events` that recorded a strategy, oldest first."""
    return tuple(
        MetaChange(
            tuple(e.payload.get("cycles") or ()),
            strategy_from(e.payload["old"]),
            strategy_from(e.payload["new"]),
            tuple(e.payload.get("why") or ()),
        )
        for e in events
        if e.kind == "meta" and "new" in e.payload
    )


@dataclass(frozen=True)
class LoopStatus:
    """Where the latest run stands: cycle, step, targets, budgets, the last events, the
    current strategy and each meta step's change."""

    run: store.LoopRun
    step: store.LoopStep | None
    targets: tuple[TargetState, ...]
    budgets: tuple[Budget, ...]
    last_events: tuple[store.LoopEvent, ...]
    strategy: Strategy
    meta: tuple[MetaChange, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        out = asdict(self)
        out["budgets"] = [{**asdict(b), "left": b.left} for b in self.budgets]
        out["strategy"] = self.strategy.as_dict()
        out["meta"] = [m.as_dict() for m in self.meta]
        return out


def loop_status(workspace: Workspace, events: int = 10) -> LoopStatus | None:
    """The latest run's status, or None when no loop has run."""
    with closing(workspace.raw_db()) as conn:
        run = store.latest_run(conn)
        if run is None:
            return None
        rows = store.steps(conn, run.id, run.cycle) if run.cycle else []
        every = store.cycles(conn, run.id)
        last = store.events(conn, run.id, last=events)
        meta = meta_changes(store.events(conn, run.id))
        current = next((c for c in every if c.number == run.cycle), None)
        tokens = tokens_since(conn, current.started_at) if current else 0
    limits = limits_from_record(run.limits)
    measured = dict(active_metrics(workspace, limits))
    targets = tuple(
        TargetState(t.text, measured.get(t.key), t.met(measured.get(t.key))) for t in limits.targets
    )
    runtime = run.runtime_s
    budgets = (
        Budget("cycles", len([c for c in every if c.status != "running"]), limits.max_cycles),
        Budget("hours", runtime / 3600, limits.max_hours),
        Budget("cycle_tokens", tokens, limits.tokens_per_cycle),
        Budget("cycle_seconds", current.runtime_s if current else 0.0, limits.cycle_timeout_s),
    )
    return LoopStatus(
        run,
        rows[-1] if rows else None,
        targets,
        budgets,
        tuple(last),
        current_strategy(workspace, run.id),
        meta,
    )


def _best_versions(workspace: Workspace, adapters: set[str]) -> dict[str, Any]:
    best: dict[str, Any] = {}
    with closing(workspace.raw_db()) as conn:
        for name in sorted(adapters):
            version = active_version(conn, workspace.root, name)
            best[name] = (
                None
                if version is None
                else {
                    "version": version.ref,
                    "metrics": {k: v.get("metrics") for k, v in version.eval_metrics.items()},
                }
            )
    return best


def report_data(workspace: Workspace, run_id: int, reason: str, detail: str) -> dict[str, Any]:
    """The final report's content: stop reason, best version per adapter, and per
    cycle what it changed and whether it helped."""
    with closing(workspace.raw_db()) as conn:
        run = store.get_run(conn, run_id)
        every = store.cycles(conn, run_id)
        meta = meta_changes(store.events(conn, run_id))
    adapters = {ref.split("@")[0] for c in every for ref in c.summary.get("candidates", [])}
    return {
        "run_id": run_id,
        "stop_reason": reason,
        "detail": detail,
        "runtime_s": run.runtime_s if run else 0.0,
        "limits": dict(run.limits) if run else {},
        "best_versions": _best_versions(workspace, adapters),
        "strategy": current_strategy(workspace, run_id).as_dict(),
        "meta": [m.as_dict() for m in meta],
        "cycles": [
            {
                "cycle": c.number,
                "repo": c.repo,
                "status": c.status,
                "runtime_s": round(c.runtime_s, 3),
                "tokens": c.tokens,
                **c.summary,
            }
            for c in every
        ],
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def report_markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# cra loop run {data['run_id']}",
        "",
        f"Stopped: **{data['stop_reason']}** ({data['detail']}) after "
        f"{data['runtime_s'] / 3600:.3f} h.",
        "",
        "## Best version per adapter",
        "",
    ]
    for name, best in data["best_versions"].items():
        lines.append(f"- {name}: {best['version'] if best else 'none active'}")
    if not data["best_versions"]:
        lines.append("- no adapter was trained")
    lines += _strategy_lines(data)
    lines += [
        "",
        "## Cycles",
        "",
        "| cycle | repo | status | tokens | changed | helped |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in data["cycles"]:
        changed = ", ".join(
            [f"promoted {r}" for r in c.get("promoted", [])]
            + [f"rolled back {r}" for r in c.get("rolled_back", [])]
        ) or ("candidates " + ", ".join(c["candidates"]) if c.get("candidates") else "nothing")
        helped = "yes" if c.get("helped") else "no"
        lines.append(
            f"| {c['cycle']} | {c['repo'] or '-'} | {c['status']} | {c['tokens']} | "
            f"{changed} | {helped} |"
        )
    return "\n".join(lines) + "\n"


def _strategy_lines(data: dict[str, Any]) -> list[str]:
    """The report's strategy section: the final strategy and each meta step's change."""
    lines = ["", "## Strategy", "", f"Final: {strategy_from(data['strategy']).text}.", ""]
    for step in data["meta"]:
        cycles = step["cycles"]
        span = f"{cycles[0]}-{cycles[-1]}" if len(cycles) > 1 else "".join(map(str, cycles))
        old, new = strategy_from(step["old"]).text, strategy_from(step["new"]).text
        lines.append(f"- after cycles {span}: {old} -> {new}")
        lines += [f"  - {why}" for why in step["why"]]
    if not data["meta"]:
        lines.append("- no meta step ran")
    return lines


def write_report(workspace: Workspace, run_id: int, reason: str, detail: str) -> tuple[Path, Path]:
    """Write `loop/report-RUN.md` and `.json`; their paths."""
    data = report_data(workspace, run_id, reason, detail)
    workspace.loop_dir.mkdir(parents=True, exist_ok=True)
    md = workspace.loop_dir / f"report-{run_id}.md"
    js = md.with_suffix(".json")
    atomic_write_text(js, json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(md, report_markdown(data))
    return md, js


@dataclass(frozen=True)
class Verification:
    """The journal's check: events that hold, and the first broken link (None: none)."""

    checked: int
    broken: store.BrokenLink | None


def verify(workspace: Workspace) -> Verification:
    """Recompute the journal's hash chain."""
    with closing(workspace.raw_db()) as conn:
        checked, broken = store.verify_journal(conn)
    return Verification(checked, broken)
