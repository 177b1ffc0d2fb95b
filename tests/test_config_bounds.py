"""Settings have real upper bounds: a huge limit is an error naming the key and line,
never a traceback later."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.config import load_config
from cra.errors import ConfigError
from tests.helpers import run_cra


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("memory_mb", "100000000000000000000"),
        ("max_processes", "100000000000000000000"),
        ("sandbox_uid", str(2**32)),
        ("sandbox_uid", str(2**32 - 1)),
        ("sandbox_uid", "0"),
        ("run_timeout_s", "inf"),
        ("run_timeout_s", "nan"),
        ("per_test_timeout_s", "1e300"),
        ("runs", "1000000"),
    ],
)
def test_out_of_range_validate_settings_are_rejected(tmp_path: Path, key: str, value: str) -> None:
    """An out-of-range validate setting is refused, naming the key and line."""
    path = tmp_path / "cra.toml"
    path.write_text(f"# limits\n[validate]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match="must be between") as info:
        load_config(path)
    assert (info.value.key, info.value.line) == (f"validate.{key}", 3)


def test_the_largest_uid_and_limits_in_range_are_accepted(tmp_path: Path) -> None:
    """The largest sandbox uid and in-range limits are accepted."""
    path = tmp_path / "cra.toml"
    path.write_text(
        "[validate]\nsandbox_uid = 4294967294\nmax_processes = 4194304\nmemory_mb = 1048576\n"
    )
    config = load_config(path)
    assert config.settings.validate.sandbox_uid == 2**32 - 2


@pytest.mark.parametrize(
    "setting",
    [
        "[serve]\nport = 70000",
        "[train]\nseed = 4294967296",
        "[llm]\ntimeout_s = inf",
        "[db]\nbusy_timeout_ms = 99999999999",
    ],
)
def test_other_settings_are_bounded_too(tmp_path: Path, setting: str) -> None:
    """Out-of-range values of other sections' settings are refused too."""
    path = tmp_path / "cra.toml"
    path.write_text(setting + "\n")
    with pytest.raises(ConfigError, match="must be between"):
        load_config(path)


def test_a_huge_memory_limit_stops_validate_in_one_line(workspace) -> None:
    """A huge memory_mb stops validate with one error line naming the file, line and key."""
    config = workspace.root / "cra.toml"
    text = config.read_text().replace("memory_mb = 4096", "memory_mb = 100000000000000000000")
    config.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("memory_mb"))
    proc = run_cra(workspace, "harness", "validate", "--repo", "tally", timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error: {config}, line {line}, key 'validate.memory_mb': must be")
