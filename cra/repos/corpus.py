"""`cra repo pack --corpus FILE`: pack a list of repositories, going on past failures.

The corpus file is TOML: a `[[repo]]` table per repository, with the keys of
`cra repo pack` (`source` and `name` required), and an optional `[defaults]` table whose
keys every entry takes unless it sets them itself. Local paths (`source`, `find_links`)
are relative to the corpus file's folder. The whole file is checked before anything is
packed; then each entry is packed with `cra.repos.pack.pack`, a package that already
exists is skipped (unless `replace`), and a failure is recorded and the next entry packed.
"""

from __future__ import annotations

import difflib
import re
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cra.errors import CraError, UsageError
from cra.repos.layout import check_name, package_path
from cra.repos.pack import SUPPORTED_PYTHONS, PackOptions, PackResult, pack
from cra.workspace import Workspace

Echo = Callable[[str], None]
INSTALL_MODES = ("auto", "pythonpath", "editable", "installed")
# Corpus key -> (kind, PackOptions field). `source` is pack's argument, not an option.
KEYS: dict[str, tuple[str, str | None]] = {
    "source": ("str", None),
    "name": ("str", "name"),
    "domain": ("str", "domain"),
    "ref": ("str", "ref"),
    "python": ("str", "python"),
    "test_cmd": ("str", "test_cmd"),
    "extras": ("strings", "extras"),
    "groups": ("strings", "groups"),
    "requirements": ("strings", "requirements"),
    "find_links": ("str", "find_links"),
    "index": ("bool", "use_index"),
    "era_months": ("int", "era_months"),
    "single_env": ("bool", "single_env"),
    "install_mode": ("str", "install_mode"),
}
PER_ENTRY = ("source", "name")
KINDS = {
    "str": "a string",
    "strings": "a list of strings",
    "bool": "true or false",
    "int": "a whole number >= 1",
}
STATUSES = ("ok", "failed", "skipped")


class CorpusInvalid(UsageError):
    """The corpus file cannot be used; lists every problem, each naming entry and key."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(
            f"{path}: {'; '.join(problems)}",
            hint="fix the corpus file; nothing was packed",
        )
        self.path = path
        self.problems = tuple(problems)


@dataclass(frozen=True)
class CorpusEntry:
    """One repository of the corpus: where it comes from and how to pack it."""

    position: int
    """1-based place of its `[[repo]]` table in the file."""
    source: str
    options: PackOptions


@dataclass(frozen=True)
class Corpus:
    """A validated corpus file."""

    path: Path
    entries: tuple[CorpusEntry, ...]


@dataclass(frozen=True)
class PackOutcome:
    """What happened to one entry: `ok`, `failed` (with its one-line error) or `skipped`."""

    name: str
    source: str
    status: str
    commits: int | None = None
    environments: int | None = None
    unusable_environments: int | None = None
    wheels: int | None = None
    seconds: float = 0.0
    error: str | None = None
    hint: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class CorpusReport:
    """Every entry's outcome, in the corpus file's order."""

    path: Path
    outcomes: tuple[PackOutcome, ...]
    seconds: float

    def count(self, status: str) -> int:
        """How many entries ended with `status`."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> tuple[PackOutcome, ...]:
        """The entries that failed to pack."""
        return tuple(o for o in self.outcomes if o.status == "failed")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return {
            "corpus": str(self.path),
            "seconds": round(self.seconds, 3),
            **{status: self.count(status) for status in STATUSES},
            "repos": [o.to_dict() for o in self.outcomes],
        }

    def raise_for_failure(self) -> None:
        """Raise CraError naming the failed entries, if any."""
        failed = self.failed
        if failed:
            names = ", ".join(o.name for o in failed)
            raise CraError(
                f"{len(failed)} of {len(self.outcomes)} repositories failed to pack: {names}",
                hint="fix them and run the same command again: packed ones are skipped",
            )


def one_line(text: str) -> str:
    """`text` with its lines joined by spaces and runs of blanks collapsed."""
    return re.sub(r"\s+", " ", text).strip()


def _is_url(source: str) -> bool:
    return "://" in source or bool(re.match(r"^[\w.-]+@[\w.-]+:", source))


def _check_value(key: str, value: Any) -> str | None:
    """Why `value` does not fit `key`, or None."""
    kind = KEYS[key][0]
    if kind == "str":
        ok = isinstance(value, str) and value.strip() != ""
    elif kind == "strings":
        ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
    elif kind == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not ok:
        return f"must be {KINDS[kind]}, not {value!r}"
    if key == "install_mode" and value not in INSTALL_MODES:
        return f"must be one of {', '.join(INSTALL_MODES)}, not {value!r}"
    if key == "python" and value not in SUPPORTED_PYTHONS:
        return f"must be one of {', '.join(SUPPORTED_PYTHONS)}, not {value!r}"
    if key == "name":
        try:
            check_name(value)
        except UsageError as exc:
            return f"{exc.message} ({exc.hint})"
    return None


def _unknown(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _check_table(table: dict[str, Any], where: str, allowed: list[str]) -> list[str]:
    problems: list[str] = []
    for key, value in table.items():
        if key not in allowed:
            problems.append(f"{where}: {_unknown(key, allowed)}")
            continue
        why = _check_value(key, value)
        if why:
            problems.append(f"{where}: key {key!r} {why}")
    return problems


def _local_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _entry(position: int, table: dict[str, Any], base: Path) -> CorpusEntry:
    fields: dict[str, Any] = {}
    for key, value in table.items():
        field_name = KEYS[key][1]
        if field_name is None:
            continue
        if KEYS[key][0] == "strings":
            value = tuple(value)
        if key == "find_links":
            value = _local_path(value, base)
        fields[field_name] = value
    source = table["source"]
    if not _is_url(source):
        source = str(_local_path(source, base))
    return CorpusEntry(position, source, PackOptions(**fields))


def load_corpus(path: Path) -> Corpus:
    """Read and check the corpus file at `path`; raise CorpusInvalid listing every problem
    (unknown keys, missing `source`/`name`, wrong types, duplicate names)."""
    path = Path(path).expanduser().absolute()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read corpus file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CorpusInvalid(path, [f"not UTF-8 text ({exc.reason})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise CorpusInvalid(path, [f"not valid TOML: {exc}"]) from None
    problems: list[str] = []
    for key in data:
        if key not in ("repo", "defaults"):
            problems.append(
                f"unknown top-level key {key!r}: a corpus has [[repo]] tables and [defaults]"
            )
    defaults = data.get("defaults", {})
    default_keys = [k for k in KEYS if k not in PER_ENTRY]
    if not isinstance(defaults, dict):
        problems.append("'defaults' must be a table ([defaults])")
        defaults = {}
    problems += _check_table(defaults, "[defaults]", default_keys)
    repos = data.get("repo", [])
    if not isinstance(repos, list) or not all(isinstance(r, dict) for r in repos):
        problems.append("'repo' must be an array of tables ([[repo]])")
        repos = []
    if not repos and not problems:
        problems.append("no [[repo]] tables: the corpus lists no repository")
    seen: dict[str, int] = {}
    tables: list[dict[str, Any]] = []
    for position, table in enumerate(repos, start=1):
        label = table.get("name")
        where = f"repo {position}" + (f" ({label!r})" if isinstance(label, str) else "")
        found = _check_table(table, where, list(KEYS))
        for key in PER_ENTRY:
            if key not in table:
                found.append(f"{where}: missing key {key!r}")
        merged = {**{k: v for k, v in defaults.items() if k in default_keys}, **table}
        if merged.get("era_months") is not None and merged.get("single_env") is True:
            found.append(f"{where}: keys 'era_months' and 'single_env' exclude each other")
        if isinstance(label, str):
            folded = label.lower()
            if folded in seen:
                first = seen[folded]
                same = (
                    "the same name"
                    if repos[first - 1].get("name") == label
                    else ("a name that differs only in case (one folder on a FAT USB stick)")
                )
                found.append(f"{where}: key 'name' repeats {same} as repo {first}")
            else:
                seen[folded] = position
        problems += found
        tables.append(merged)
    if problems:
        raise CorpusInvalid(path, problems)
    entries = tuple(_entry(i, t, path.parent) for i, t in enumerate(tables, start=1))
    return Corpus(path, entries)


def _packed(name: str, source: str, result: PackResult) -> PackOutcome:
    """The outcome of an entry that packed, with its counters."""
    manifest = result.manifest
    return PackOutcome(
        name,
        source,
        "ok",
        commits=result.commits,
        environments=len(manifest.environments),
        unusable_environments=sum(1 for e in manifest.environments if not e.usable),
        wheels=len(manifest.wheels),
        seconds=result.seconds,
    )


def pack_corpus(
    workspace: Workspace,
    corpus: Corpus,
    *,
    replace_existing: bool = False,
    echo: Echo | None = None,
) -> CorpusReport:
    """Pack every entry of `corpus` in order and return each one's outcome.

    An entry whose package exists is skipped unless `replace_existing`; one that fails is
    recorded with its one-line error and the next is packed. Never raises for a failed
    entry (see CorpusReport.raise_for_failure); Ctrl-C stops after pack cleaned up.
    """
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    outcomes: list[PackOutcome] = []
    total = len(corpus.entries)
    for entry in corpus.entries:
        name = entry.options.name
        head = f"[{entry.position}/{total}] {name}"
        if package_path(workspace.repos_dir, name).root.exists() and not replace_existing:
            say(f"{head}: already packed, skipped (--replace packs it again)")
            outcomes.append(PackOutcome(name, entry.source, "skipped", note="already packed"))
            continue
        say(f"{head}: packing {entry.source}")
        began = time.perf_counter()
        options = replace(entry.options, replace=replace_existing)
        try:
            result = pack(workspace, entry.source, options, echo=lambda m: say(f"  {m}"))
        except CraError as exc:
            error, hint = one_line(exc.message), exc.hint
        except Exception as exc:  # a bug in one repository must not stop the other 39
            say(traceback.format_exc().rstrip())
            error, hint = f"internal error: {type(exc).__name__}: {one_line(str(exc))}", None
        else:
            m = result.manifest
            say(f"{head}: ok, {result.commits} commits, {len(m.wheels)} wheels")
            for warning in result.warnings:
                say(f"  warning: {one_line(warning)}")
            outcomes.append(_packed(name, entry.source, result))
            continue
        say(f"{head}: failed: {error}")
        outcomes.append(
            PackOutcome(
                name,
                entry.source,
                "failed",
                seconds=time.perf_counter() - began,
                error=error,
                hint=hint,
            )
        )
    return CorpusReport(corpus.path, tuple(outcomes), time.perf_counter() - started)
