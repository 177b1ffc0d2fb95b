"""Plan schema validation of model output."""

from __future__ import annotations

import json

import pytest

from cra.harness.plan import InvalidPlan, parse_plan

GOOD = {
    "summary": "Fix it",
    "steps": [
        {
            "id": 1,
            "file": "a.py",
            "symbols": ["f"],
            "action": "modify",
            "description": "x",
            "depends_on": [],
        },
        {
            "id": 2,
            "file": "b.py",
            "symbols": [],
            "action": "add",
            "description": "y",
            "depends_on": [1],
        },
    ],
    "tests": [{"file": "tests/test_a.py", "description": "z"}],
}


def test_valid_plan_round_trips() -> None:
    """A valid plan parses and serialises back to the same JSON."""
    plan = parse_plan(json.dumps(GOOD))
    assert plan.steps[1].depends_on == (1,)
    assert json.loads(plan.to_json()) == GOOD


def test_code_fence_is_tolerated() -> None:
    """A plan wrapped in a json code fence still parses."""
    assert parse_plan("```json\n" + json.dumps(GOOD) + "\n```").summary == "Fix it"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty output"),
        ('{"summary": "x", "steps": [', "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({**GOOD, "extra": 1}), "unknown keys"),
        (json.dumps({**GOOD, "steps": [{**GOOD["steps"][0], "action": "rewrite"}]}), "action"),
        (json.dumps({**GOOD, "steps": [{**GOOD["steps"][0], "depends_on": [7]}]}), "unknown"),
        (json.dumps({**GOOD, "steps": [GOOD["steps"][0], GOOD["steps"][0]]}), "unique"),
        (json.dumps({**GOOD, "steps": [{**GOOD["steps"][0], "file": " "}]}), "file"),
        (json.dumps({**GOOD, "tests": [{"file": 1}]}), r"tests\[0\]"),
    ],
)
def test_invalid_output_says_why(text: str, reason: str) -> None:
    """Invalid model output is refused with the reason: empty, not JSON, bad keys, ids, files."""
    with pytest.raises(InvalidPlan, match=reason):
        parse_plan(text)
