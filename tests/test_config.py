"""`cra.toml`: defaults, strict parsing, errors that name key and line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cra.config import Config, default_config_text, load_config
from cra.errors import ConfigError
from cra.settings_table import SETTINGS


def test_default_text_lists_every_setting_with_a_comment() -> None:
    """The default cra.toml lists every setting at its default, each under its help comment."""
    text = default_config_text()
    data = tomllib.loads(text)
    for setting in SETTINGS:
        assert data[setting.section][setting.key] == setting.default
        assert f"# {setting.help}\n{setting.key} = " in text


def test_default_text_loads_to_defaults(tmp_path: Path) -> None:
    """The default cra.toml loads to the default config."""
    path = tmp_path / "cra.toml"
    path.write_text(default_config_text())
    assert load_config(path).values == Config.defaults().values


def test_override_is_applied_and_its_line_known(tmp_path: Path) -> None:
    """A setting in cra.toml overrides the default and its line number is known."""
    path = tmp_path / "cra.toml"
    path.write_text("# comment\n\n[db]\nbusy_timeout_ms = 250\n")
    config = load_config(path)
    assert config.settings.db.busy_timeout_ms == 250
    assert config.line_of("db.busy_timeout_ms") == 4


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A TOML syntax error names its line."""
    path = tmp_path / "cra.toml"
    path.write_text("[db]\nbusy_timeout_ms = 5\noops = = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3
    assert "line 3" in str(info.value)


def test_unknown_key_names_key_line_and_suggests(tmp_path: Path) -> None:
    """An unknown key is an error naming the key and line and suggesting the close match."""
    path = tmp_path / "cra.toml"
    path.write_text("[db]\n\nbusy_timeout = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "db.busy_timeout"
    assert info.value.line == 3
    assert "busy_timeout_ms" in (info.value.hint or "")


def test_unknown_section(tmp_path: Path) -> None:
    """An unknown section is an error at its line that suggests the known section."""
    path = tmp_path / "cra.toml"
    path.write_text("[dbb]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section") as info:
        load_config(path)
    assert info.value.line == 1
    assert "'db'" in (info.value.hint or "")


def test_wrong_type_names_key_and_line(tmp_path: Path) -> None:
    """A value of the wrong type is an error naming the key and line."""
    path = tmp_path / "cra.toml"
    path.write_text('[db]\nbusy_timeout_ms = "soon"\n')
    with pytest.raises(ConfigError, match="must be an integer") as info:
        load_config(path)
    assert (info.value.key, info.value.line) == ("db.busy_timeout_ms", 2)


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    """A boolean is refused where an integer is needed."""
    path = tmp_path / "cra.toml"
    path.write_text("[db]\nbusy_timeout_ms = true\n")
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(path)


@pytest.mark.parametrize("value", ["0", "-5"])
def test_invalid_limit_is_an_error_never_unlimited(tmp_path: Path, value: str) -> None:
    """An out-of-range limit is an error, never taken as unlimited."""
    path = tmp_path / "cra.toml"
    path.write_text(f"[db]\nbusy_timeout_ms = {value}\n")
    with pytest.raises(ConfigError, match="must be between 1 and"):
        load_config(path)


def test_unreadable_file(tmp_path: Path) -> None:
    """A cra.toml that cannot be decoded is a cannot-read error."""
    path = tmp_path / "cra.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_every_setting_is_a_typed_attribute_of_its_section(tmp_path: Path) -> None:
    """Each `section.key` is read once into `settings.section.key`; lists become tuples."""
    path = tmp_path / "cra.toml"
    path.write_text('[validate]\nsandbox_uid = 4242\n[serve]\nextra_args = ["--x"]\n')
    settings = load_config(path).settings
    assert settings.validate.sandbox_uid == 4242
    assert settings.serve.extra_args == ("--x",)
    for setting in SETTINGS:
        value = getattr(getattr(settings, setting.section), setting.key.replace("-", "_"))
        expected = load_config(path).values[setting.name]
        assert value == (tuple(expected) if isinstance(expected, list) else expected)


def test_a_whole_number_for_a_float_setting_reads_as_a_float(tmp_path: Path) -> None:
    """`drain_s = 3` is the float 3.0, as its declared type says."""
    path = tmp_path / "cra.toml"
    path.write_text("[serve]\ndrain_s = 3\n")
    drain = load_config(path).settings.serve.drain_s
    assert drain == 3.0 and isinstance(drain, float)


def test_stages_route_by_pipeline_name() -> None:
    """Stage names with a dash are looked up by name; an unknown stage routes nowhere."""
    stages = Config.defaults().settings.stages
    assert stages.adapter_for("task-analysis") == "task-analysis"
    assert stages.adapter_for("plan") == "planning"
    assert stages.adapter_for("nope") is None
    assert [stage for stage, _ in stages.adapters()] == [
        "scope",
        "precision",
        "task-analysis",
        "plan",
        "execute",
    ]
