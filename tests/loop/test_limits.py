"""The loop's limits: [loop] settings, `cra loop start` overrides, strict checks."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.config import Config
from cra.errors import UsageError
from cra.loop.decide import StopReason
from cra.loop.limits import limits_from, parse_target
from cra.settings_table import LOOP_SETTINGS
from tests.helpers import run_cra


def test_defaults_come_from_the_loop_section() -> None:
    """Without overrides the limits are the [loop] defaults."""
    lim = limits_from(Config.defaults().settings.loop)
    assert (lim.max_cycles, lim.patience, lim.cycle_timeout_s) == (10, 3, 1800.0)
    assert lim.targets == ()


def test_overrides_replace_settings_and_targets_parse() -> None:
    """A flag's value replaces its setting; targets parse into adapter, metric, op, value."""
    lim = limits_from(
        Config.defaults().settings.loop,
        {"max_cycles": 2, "targets": ["scope-ranker.recall_at_1>=0.8"]},
    )
    assert lim.max_cycles == 2
    (target,) = lim.targets
    assert (target.adapter, target.metric, target.op, target.value) == (
        "scope-ranker",
        "recall_at_1",
        ">=",
        0.8,
    )
    assert target.met(0.8) and not target.met(0.79) and not target.met(None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_cycles", 0),
        ("max_cycles", -1),
        ("patience", 0),
        ("max_hours", 0),
        ("tokens_per_cycle", 0),
        ("cycle_timeout_s", 0.5),
        ("max_cycles", True),
        ("max_cycles", "10"),
    ],
)
def test_an_invalid_limit_is_an_error_never_unlimited(key, value) -> None:
    """Zero, negative or non-numeric limits are refused naming the flag."""
    with pytest.raises(UsageError, match="--" + key.replace("_", "-")):
        limits_from(Config.defaults().settings.loop, {key: value})


def test_min_hours_above_max_hours_is_refused() -> None:
    """min_hours may not exceed max_hours."""
    with pytest.raises(UsageError, match="--min-hours"):
        limits_from(Config.defaults().settings.loop, {"min_hours": 3.0, "max_hours": 2.0})


def test_a_malformed_target_is_refused() -> None:
    """A target that is not ADAPTER.METRIC>=VALUE is a UsageError."""
    with pytest.raises(UsageError, match=r"not ADAPTER\.METRIC"):
        parse_target("scope recall 0.8")


def test_cli_refuses_an_invalid_flag_in_one_line(workspace) -> None:
    """`cra loop start --max-cycles 0` fails with one line, before any loop starts."""
    result = run_cra(workspace, "loop", "start", "--max-cycles", "0")
    assert result.returncode != 0
    assert "error: --max-cycles 0 must be between 1 and 100000" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_loop_setting_in_cra_toml_is_refused(workspace) -> None:
    """[loop] patience = 0 in cra.toml is an error naming the key."""
    (workspace.root / "cra.toml").write_text("[loop]\npatience = 0\n")
    result = run_cra(workspace, "loop", "status")
    assert result.returncode != 0 and "loop.patience" in result.stderr


def test_loop_start_help_names_every_setting_default_and_stop_reason() -> None:
    """`cra loop start --help` has a flag with its default for every [loop] setting and
    names every stop reason with its exit code."""
    text = " ".join(CliRunner().invoke(cli, ["loop", "start", "--help"]).output.split())
    for setting in LOOP_SETTINGS:
        flag = "--target" if setting.key == "targets" else "--" + setting.key.replace("_", "-")
        assert flag in text
        if setting.key != "targets":
            assert f"[loop] {setting.key})" in text
    for reason in StopReason:
        assert f"{reason.value} ({reason.exit_code}):" in text
