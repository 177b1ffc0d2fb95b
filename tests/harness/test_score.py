"""Plan-diff alignment on hand-made plans and gold."""

from __future__ import annotations

import pytest

from cra.harness.gold import GoldSymbol
from cra.harness.plan import validate_plan
from cra.harness.score import Gold, Weights, score_plan

DEPS = {
    "src/app/api.py": {"src/app/models.py", "src/app/util.py"},
    "src/app/models.py": {"src/app/util.py"},
    "src/app/util.py": set(),
}


def plan(*steps: tuple[str, list[str]]) -> object:
    return validate_plan(
        {
            "summary": "s",
            "steps": [
                {
                    "id": i,
                    "file": f,
                    "symbols": syms,
                    "action": "modify",
                    "description": "d",
                    "depends_on": [],
                }
                for i, (f, syms) in enumerate(steps, start=1)
            ],
            "tests": [],
        }
    )


GOLD = Gold.build(
    [("src/app/util.py", None), ("src/app/api.py", None)],
    [
        GoldSymbol("src/app/util.py", "clamp", "modified"),
        GoldSymbol("src/app/api.py", "Api.get", "modified"),
    ],
)


def test_perfect_plan_scores_one() -> None:
    """A plan of exactly the gold files and symbols, in dependency order, aligns at 1.0."""
    p = plan(("src/app/util.py", ["clamp"]), ("src/app/api.py", ["Api.get"]))
    score = score_plan(p, GOLD, DEPS)
    assert score.file_f1 == 1.0
    assert score.symbol_f1 == 1.0
    assert score.order_score == 1.0
    assert score.alignment == pytest.approx(1.0)


def test_wrong_files_score_zero_file_f1() -> None:
    """A plan of only non-gold files scores zero and lists the gold files it missed."""
    p = plan(("src/app/models.py", ["Model"]))
    score = score_plan(p, GOLD, DEPS)
    assert score.file_f1 == 0.0
    assert score.symbol_f1 == 0.0
    assert score.alignment == 0.0
    assert score.details["missed_files"] == ["src/app/api.py", "src/app/util.py"]


def test_right_files_wrong_order_lowers_the_order_score() -> None:
    """Steps against the import order score order 0 and lower the alignment to 0.8."""
    right = score_plan(
        plan(("src/app/util.py", ["clamp"]), ("src/app/api.py", ["Api.get"])), GOLD, DEPS
    )
    wrong = score_plan(
        plan(("src/app/api.py", ["Api.get"]), ("src/app/util.py", ["clamp"])), GOLD, DEPS
    )
    assert wrong.file_f1 == right.file_f1 == 1.0
    assert wrong.order_score == 0.0
    assert wrong.alignment < right.alignment
    assert wrong.alignment == pytest.approx(0.8)


def test_partial_plan_precision_and_recall() -> None:
    """Half-right files and symbols give 0.5 precision and recall; order counts every step."""
    p = plan(("src/app/util.py", ["clamp", "wrap"]), ("src/app/models.py", []))
    score = score_plan(p, GOLD, DEPS)
    assert (score.file_precision, score.file_recall) == (0.5, 0.5)
    assert (score.symbol_precision, score.symbol_recall) == (0.5, 0.5)
    # models imports util and comes after it: ordering counts every step, gold or not.
    assert score.order_score == 1.0


def test_added_and_deleted_symbols_count() -> None:
    """Added and deleted gold symbols both count toward symbol recall."""
    gold = Gold.build(
        [("src/app/util.py", None)],
        [
            GoldSymbol("src/app/util.py", "new_helper", "added"),
            GoldSymbol("src/app/util.py", "old_helper", "deleted"),
        ],
    )
    p = plan(("src/app/util.py", ["new_helper"]))
    score = score_plan(p, gold, DEPS)
    assert score.symbol_recall == 0.5
    assert score.symbol_precision == 1.0


def test_renamed_file_matches_by_old_or_new_path() -> None:
    """A renamed gold file matches by its old path, its new path or a ./-prefixed one."""
    gold = Gold.build(
        [("src/app/helpers.py", "src/app/utils.py")],
        [GoldSymbol("src/app/helpers.py", "clamp", "modified")],
    )
    for named in ("src/app/helpers.py", "src/app/utils.py", "./src/app/utils.py"):
        score = score_plan(plan((named, ["clamp"])), gold, {})
        assert score.file_f1 == 1.0
        assert score.symbol_f1 == 1.0


def test_bare_method_name_and_path_qualified_symbols_match() -> None:
    """A bare method name and a path::symbol name both match their gold symbols."""
    p = plan(("src/app/api.py", ["get", "src/app/util.py::clamp"]))
    score = score_plan(p, GOLD, DEPS)
    assert score.symbol_recall == 1.0


def test_no_gold_symbols_leaves_symbols_out_of_the_score() -> None:
    """Gold without symbols leaves the symbol term out of the alignment."""
    gold = Gold.build([("src/app/util.py", None)], [])
    score = score_plan(plan(("src/app/util.py", [])), gold, {})
    assert not score.symbols_defined
    assert score.alignment == 1.0


def test_weights_validate_and_apply() -> None:
    """Negative or all-zero weights are refused; the weights given set the alignment mix."""
    with pytest.raises(ValueError, match="weight files"):
        Weights(files=-1)
    with pytest.raises(ValueError, match="at least one"):
        Weights(0, 0, 0)
    p = plan(("src/app/util.py", []))
    only_files = score_plan(p, GOLD, DEPS, Weights(files=1, symbols=0, order=0))
    assert only_files.alignment == pytest.approx(2 / 3)
