"""The loop's limits: the `[loop]` settings with `cra loop start`'s overrides, checked.

A limit is checked with the same bounds as its setting; an invalid one is an error,
never "unlimited".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cra.config import LoopSettings
from cra.errors import UsageError
from cra.settings_table import LOOP_SETTINGS, TARGET_RE


@dataclass(frozen=True)
class Target:
    """`adapter.metric>=value` (or `<=`): met once the active version's eval metric holds."""

    adapter: str
    metric: str
    op: str
    value: float

    @property
    def key(self) -> str:
        """`adapter.metric`."""
        return f"{self.adapter}.{self.metric}"

    @property
    def text(self) -> str:
        """The target as written."""
        return f"{self.key}{self.op}{self.value:g}"

    def met(self, measured: float | None) -> bool:
        """Whether `measured` meets the target (never without a measurement)."""
        if measured is None:
            return False
        return measured >= self.value if self.op == ">=" else measured <= self.value


def parse_target(text: str) -> Target:
    """`scope-ranker.recall_at_1>=0.8` as a Target; UsageError for anything else."""
    match = TARGET_RE.match(text.strip())
    if match is None:
        raise UsageError(
            f"target {text!r} is not ADAPTER.METRIC>=VALUE",
            hint='write e.g. "scope-ranker.recall_at_1>=0.8" (or <= for lower-is-better)',
        )
    adapter, metric, op, value = match.groups()
    return Target(adapter, metric, op, float(value))


@dataclass(frozen=True)
class Limits:
    """Everything that bounds one loop run."""

    max_cycles: int
    patience: int
    cycle_timeout_s: float
    max_hours: float
    min_hours: float
    tokens_per_cycle: int
    tasks_per_cycle: int
    max_failed_cycles: int
    meta_every: int
    targets: tuple[Target, ...]
    widen_every: int = 0
    meta_epochs_step: float = 1.0
    meta_max_epochs: float = 8.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (targets as written), as the run records it."""
        out = dataclasses.asdict(self)
        out["targets"] = [t.text for t in self.targets]
        return out


def limits_from(settings: LoopSettings, overrides: Mapping[str, Any] | None = None) -> Limits:
    """The settings with every non-None override applied, each checked against its
    setting's bounds (UsageError naming the flag and value otherwise)."""
    values: dict[str, Any] = dataclasses.asdict(settings)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in values:
            raise UsageError(f"unknown loop limit {key!r}")
        values[key] = tuple(value) if key == "targets" else value
    for setting in LOOP_SETTINGS:
        value = values[setting.key]
        flag = "--" + setting.key.replace("_", "-")
        if setting.type in (int, float) and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise UsageError(f"{flag} {value!r} is not a number")
        problem = (
            setting.check(list(value) if setting.type is list else value) if setting.check else None
        )
        if problem:
            raise UsageError(
                f"{flag} {value!r} {problem}", hint="an invalid limit is never unlimited"
            )
    if values["min_hours"] > values["max_hours"]:
        raise UsageError(
            f"--min-hours {values['min_hours']:g} is more than --max-hours {values['max_hours']:g}"
        )
    targets = tuple(parse_target(t) for t in values.pop("targets"))
    return Limits(targets=targets, **values)


def limits_from_record(record: Mapping[str, Any]) -> Limits:
    """The limits a run recorded (see :meth:`Limits.as_dict`)."""
    targets = tuple(parse_target(t) for t in record["targets"])
    return Limits(**{**record, "targets": targets})
