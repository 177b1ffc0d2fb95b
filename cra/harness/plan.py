"""The plan schema every planner produces, and strict validation of model output.

A plan: `{"summary": str, "steps": [{"id": int, "file": str, "symbols": [str],
"action": "modify|add|delete", "description": str, "depends_on": [int]}],
"tests": [{"file": str, "description": str}]}`. Output that does not parse or does not
validate raises :class:`InvalidPlan`; callers record it and go on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("modify", "add", "delete")

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "steps", "tests"],
    "properties": {
        "summary": {"type": "string"},
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "file", "symbols", "action", "description", "depends_on"],
                "properties": {
                    "id": {"type": "integer"},
                    "file": {"type": "string"},
                    "symbols": {"type": "array", "items": {"type": "string"}},
                    "action": {"type": "string", "enum": list(ACTIONS)},
                    "description": {"type": "string"},
                    "depends_on": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["file", "description"],
                "properties": {"file": {"type": "string"}, "description": {"type": "string"}},
            },
        },
    },
}


class InvalidPlan(ValueError):
    """Model output that is not a valid plan; `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Step:
    """One step of a plan: a file to change, the symbols in it, and what to do."""

    id: int
    file: str
    symbols: tuple[str, ...]
    action: str
    description: str
    depends_on: tuple[int, ...]


@dataclass(frozen=True)
class PlanTest:
    """A test the plan says to write or run."""

    file: str
    description: str


@dataclass(frozen=True)
class Plan:
    """A validated plan."""

    summary: str
    steps: tuple[Step, ...]
    tests: tuple[PlanTest, ...]

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, in the schema's shape."""
        data = asdict(self)
        for step in data["steps"]:
            step["symbols"] = list(step["symbols"])
            step["depends_on"] = list(step["depends_on"])
        data["steps"] = list(data["steps"])
        data["tests"] = list(data["tests"])
        return data

    def to_json(self) -> str:
        """Canonical JSON text of the plan."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise InvalidPlan(reason)


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    _require(isinstance(value, list), f"{where} must be a list")
    _require(all(isinstance(v, str) for v in value), f"{where} must hold strings")
    return tuple(value)


def validate_plan(data: Any) -> Plan:
    """Check `data` against the plan schema and return it as a Plan."""
    _require(isinstance(data, dict), "a plan must be a JSON object")
    extra = set(data) - {"summary", "steps", "tests"}
    _require(not extra, f"unknown keys: {', '.join(sorted(extra))}")
    _require(isinstance(data.get("summary"), str), "summary must be a string")
    steps_data = data.get("steps")
    _require(isinstance(steps_data, list), "steps must be a list")
    steps: list[Step] = []
    for n, item in enumerate(steps_data):
        where = f"steps[{n}]"
        _require(isinstance(item, dict), f"{where} must be an object")
        missing = {"id", "file", "symbols", "action", "description", "depends_on"} - set(item)
        _require(not missing, f"{where} lacks {', '.join(sorted(missing))}")
        _require(isinstance(item["id"], int) and not isinstance(item["id"], bool), f"{where}.id")
        _require(
            isinstance(item["file"], str) and item["file"].strip() != "",
            f"{where}.file must be a non-empty string",
        )
        _require(item["action"] in ACTIONS, f"{where}.action must be one of {ACTIONS}")
        _require(isinstance(item["description"], str), f"{where}.description must be a string")
        deps = item["depends_on"]
        _require(
            isinstance(deps, list)
            and all(isinstance(d, int) and not isinstance(d, bool) for d in deps),
            f"{where}.depends_on must be a list of step ids",
        )
        steps.append(
            Step(
                id=item["id"],
                file=item["file"].strip(),
                symbols=_str_list(item["symbols"], f"{where}.symbols"),
                action=item["action"],
                description=item["description"],
                depends_on=tuple(deps),
            )
        )
    ids = [s.id for s in steps]
    _require(len(ids) == len(set(ids)), "step ids must be unique")
    for step in steps:
        unknown = set(step.depends_on) - set(ids)
        _require(not unknown, f"step {step.id} depends on unknown steps {sorted(unknown)}")
    tests_data = data.get("tests")
    _require(isinstance(tests_data, list), "tests must be a list")
    tests: list[PlanTest] = []
    for n, item in enumerate(tests_data):
        _require(
            isinstance(item, dict)
            and isinstance(item.get("file"), str)
            and isinstance(item.get("description"), str),
            f"tests[{n}] must be an object with file and description strings",
        )
        tests.append(PlanTest(item["file"], item["description"]))
    return Plan(data["summary"], tuple(steps), tuple(tests))


def parse_plan(text: str | None) -> Plan:
    """Parse model output into a Plan; tolerate a Markdown code fence around the JSON."""
    if text is None or not text.strip():
        raise InvalidPlan("empty output")
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidPlan(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return validate_plan(data)
