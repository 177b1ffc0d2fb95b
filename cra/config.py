"""`cra.toml`: every setting, its default, and strict parsing with line numbers.

Settings are declared once, in :data:`cra.settings_table.SETTINGS`. `cra init` writes
them all with their defaults and comments; loading rejects unknown keys and wrong types,
naming the key and the line, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from cra.errors import ConfigError
from cra.settings_table import SECTION_HELP, SETTINGS, STAGES, Setting

CONFIG_NAME = "cra.toml"


@dataclass(frozen=True)
class DbSettings:
    """[db] of `cra.toml`."""

    busy_timeout_ms: int


@dataclass(frozen=True)
class LlmSettings:
    """[llm] of `cra.toml`."""

    endpoint: str
    model: str
    api_key_env: str
    timeout_s: float
    max_retries: int
    max_tokens: int


@dataclass(frozen=True)
class HarnessSettings:
    """[harness] of `cra.toml`."""

    top_k: int
    baseline_max_files: int
    baseline_max_symbols: int


@dataclass(frozen=True)
class RetrieveSettings:
    """[retrieve] of `cra.toml`."""

    ranker: str


@dataclass(frozen=True)
class MineSettings:
    """[mine] of `cra.toml`."""

    max_source_files: int
    max_source_lines: int
    max_patch_chars: int


@dataclass(frozen=True)
class ScoreSettings:
    """[score] of `cra.toml`."""

    weight_files: float
    weight_symbols: float
    weight_order: float


@dataclass(frozen=True)
class ReposSettings:
    """[repos] of `cra.toml`."""

    era_months: int
    test_timeout_s: float
    per_test_timeout_s: float
    harness_requirements: tuple[str, ...]
    trusted_keys: tuple[str, ...]


@dataclass(frozen=True)
class EnvSettings:
    """[env] of `cra.toml`."""

    installer: str


@dataclass(frozen=True)
class ValidateSettings:
    """[validate] of `cra.toml`."""

    runs: int
    run_timeout_s: float
    per_test_timeout_s: float
    memory_mb: int
    max_processes: int
    sandbox_uid: int


@dataclass(frozen=True)
class ModelSettings:
    """[model] of `cra.toml`."""

    base: str


@dataclass(frozen=True)
class ServeSettings:
    """[serve] of `cra.toml`."""

    python: str
    host: str
    port: int
    max_loras: int
    max_model_len: int
    start_timeout_s: float
    drain_s: float
    extra_args: tuple[str, ...]


@dataclass(frozen=True)
class CurateSettings:
    """[curate] of `cra.toml`."""

    eval_share: float
    replay_share: float
    domain_cap: float
    min_examples: int
    dpo_min_margin: float
    near_dup_threshold: float
    minhash_perm: int
    shingle_words: int
    teacher_models: tuple[str, ...]
    teacher_min_alignment: float
    execute_requires_verified: bool
    max_prompt_chars: int
    target_scope: float
    target_precision: float
    target_planning: float
    target_execute: float
    target_scope_ranker: float


@dataclass(frozen=True)
class TrainSettings:
    """[train] of `cra.toml`."""

    rank: int
    alpha: int
    dropout: float
    learning_rate: float
    dpo_learning_rate: float
    dpo_beta: float
    epochs: float
    max_steps: int
    batch_size: int
    grad_accum: int
    max_length: int
    seed: int


@dataclass(frozen=True)
class AdaptersSettings:
    """[adapters] of `cra.toml`."""

    noise_floor: float
    bootstrap: int
    bootstrap_quantile: float
    max_new_tokens: int
    min_live_samples: int


@dataclass(frozen=True)
class RankerSettings:
    """[ranker] of `cra.toml`."""

    base: str
    epochs: float
    batch_size: int
    learning_rate: float
    hard_negatives: int
    candidates: int
    max_seq_length: int
    validation_share: float
    seed: int


@dataclass(frozen=True)
class LoopSettings:
    """[loop] of `cra.toml`: the self-improvement loop's limits and targets."""

    max_cycles: int
    patience: int
    cycle_timeout_s: float
    max_hours: float
    min_hours: float
    tokens_per_cycle: int
    tasks_per_cycle: int
    max_failed_cycles: int
    meta_every: int
    targets: tuple[str, ...]
    widen_every: int
    meta_epochs_step: float
    meta_max_epochs: float


@dataclass(frozen=True)
class StagesSettings:
    """[stages] of `cra.toml`: the adapter each pipeline stage routes to."""

    scope: str
    precision: str
    task_analysis: str
    plan: str
    execute: str

    def adapters(self) -> tuple[tuple[str, str], ...]:
        """(stage, adapter) of every stage, in pipeline order."""
        return tuple((stage, getattr(self, _field_name(stage))) for stage in STAGES)

    def adapter_for(self, stage: str) -> str | None:
        """The adapter `stage` routes to; None for a stage the pipeline does not have."""
        return dict(self.adapters()).get(stage)


@dataclass(frozen=True)
class Settings:
    """Every section of `cra.toml`, typed: `settings.validate.sandbox_uid` is an int."""

    db: DbSettings
    llm: LlmSettings
    harness: HarnessSettings
    retrieve: RetrieveSettings
    mine: MineSettings
    score: ScoreSettings
    repos: ReposSettings
    env: EnvSettings
    validate: ValidateSettings
    model: ModelSettings
    serve: ServeSettings
    curate: CurateSettings
    train: TrainSettings
    adapters: AdaptersSettings
    ranker: RankerSettings
    stages: StagesSettings
    loop: LoopSettings


def _field_name(key: str) -> str:
    """The attribute of a `cra.toml` key: `task-analysis` is `task_analysis`."""
    return key.replace("-", "_")


_FIELD_TYPES: dict[type, str] = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    list: "tuple[str, ...]",
}
"""The attribute type of each setting type: lists become tuples, so settings stay frozen."""


def _section_types() -> dict[str, type]:
    """Each section's dataclass, checked against :data:`SETTINGS` key by key."""
    types: dict[str, type] = get_type_hints(Settings)
    for section, cls in types.items():
        declared = [
            (_field_name(s.key), _FIELD_TYPES[s.type]) for s in SETTINGS if s.section == section
        ]
        typed = [(f.name, str(f.type)) for f in fields(cls)]
        if declared != typed:
            raise TypeError(
                f"{cls.__name__} does not match SETTINGS [{section}]: {typed} != {declared}"
            )
    if set(types) != {s.section for s in SETTINGS}:
        raise TypeError("Settings does not have one field per section of SETTINGS")
    return types


_SECTION_TYPES = _section_types()


def _typed(setting: Setting, value: Any) -> Any:
    if setting.type is list:
        return tuple(value)
    if setting.type is float:
        return float(value)
    return value


def _settings(values: Mapping[str, Any]) -> Settings:
    """Read every section once into its frozen dataclass."""
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_TYPES}
    for setting in SETTINGS:
        sections[setting.section][_field_name(setting.key)] = _typed(setting, values[setting.name])
    return Settings(**{name: _SECTION_TYPES[name](**kw) for name, kw in sections.items()})


def _by_name() -> dict[str, Setting]:
    return {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """The settings in force: the defaults, overridden by a workspace's `cra.toml`."""

    values: Mapping[str, Any]
    path: Path | None = None
    _lines: Mapping[str, int] = field(default_factory=dict, repr=False)
    settings: Settings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the typed view is built once, here, from the values.
        object.__setattr__(self, "settings", _settings(self.values))

    def line_of(self, name: str) -> int | None:
        """The line of `cra.toml` that set `name`, if the file set it."""
        return self._lines.get(name)

    @classmethod
    def defaults(cls) -> Config:
        """Every setting at its default."""
        return cls({s.name: s.default for s in SETTINGS})


_DECODE_LINE = re.compile(r"line (\d+)")
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Map `section.key` (and `section`) to the line that defines it."""
    lines: dict[str, int] = {}
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            section = header.group(1)
            lines.setdefault(section, number)
            continue
        key = _KEY.match(raw)
        if key:
            name = f"{section}.{key.group(1)}" if section else key.group(1)
            lines.setdefault(name, number)
    return lines


def _type_ok(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
}


def _suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def load_config(path: Path) -> Config:
    """Read `path` and return the settings in force; raise ConfigError naming key and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read: {exc}", path=path, hint="check the file's permissions and encoding"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _DECODE_LINE.search(str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}",
            path=path,
            line=int(found.group(1)) if found else None,
            hint="fix the syntax, or move the file away and run `cra init` for a fresh one",
        ) from exc
    lines = _key_lines(text)
    known = _by_name()
    sections = sorted({s.section for s in SETTINGS})
    values = {s.name: s.default for s in SETTINGS}
    set_lines: dict[str, int] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                "settings belong in a [section]",
                path=path,
                key=section,
                line=lines.get(section),
                hint=f"known sections: {', '.join(sections)}",
            )
        if section not in sections:
            raise ConfigError(
                "unknown section",
                path=path,
                key=section,
                line=lines.get(section),
                hint=_suggest(section, sections) or f"known sections: {', '.join(sections)}",
            )
        for key, value in table.items():
            name = f"{section}.{key}"
            line = lines.get(name)
            setting = known.get(name)
            if setting is None:
                keys = [s.key for s in SETTINGS if s.section == section]
                raise ConfigError(
                    "unknown setting",
                    path=path,
                    key=name,
                    line=line,
                    hint=_suggest(key, keys) or f"known keys in [{section}]: {', '.join(keys)}",
                )
            if not _type_ok(value, setting.type):
                raise ConfigError(
                    f"must be {_TYPE_NAMES.get(setting.type, setting.type.__name__)}, "
                    f"got {value!r}",
                    path=path,
                    key=name,
                    line=line,
                    hint=f"default: {render_value(setting.default)}",
                )
            if setting.type is float:
                value = float(value)
            problem = setting.check(value) if setting.check else None
            if problem:
                raise ConfigError(
                    f"{problem}, got {value!r}",
                    path=path,
                    key=name,
                    line=line,
                    hint=setting.help,
                )
            values[name] = value
            if line is not None:
                set_lines[name] = line
    return Config(values, path, set_lines)


def render_value(value: Any) -> str:
    """Render a default as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value).replace("_", "")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def default_config_text() -> str:
    """The `cra.toml` that `cra init` writes: every setting, its default and a comment."""
    out = [
        "# cra workspace settings. Every setting is shown with its default;",
        "# change a value here to override it. Unknown keys are an error.",
    ]
    for section in dict.fromkeys(s.section for s in SETTINGS):
        out.append("")
        if section in SECTION_HELP:
            out.append(f"# {SECTION_HELP[section]}")
        out.append(f"[{section}]")
        for setting in (s for s in SETTINGS if s.section == section):
            out.append(f"# {setting.help}")
            out.append(f"{setting.key} = {render_value(setting.default)}")
    return "\n".join(out) + "\n"
