"""`manifest.json`: what a repo package holds, validated on every load.

The manifest carries its own checksum: `checksum` is the sha256 of the canonical JSON
(sorted keys, no whitespace) of every other field, so an edit by hand that does not
recompute it is caught. Validation is hand-written and names the field at fault.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cra.errors import CraError
from cra.fsutil import atomic_write_text

FORMAT_VERSION = 1
MODES = ("pythonpath", "editable", "installed")
WHEEL_RE = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
PYTHON_RE = re.compile(r"^3\.\d{1,2}$")


class ManifestError(CraError, ValueError):
    """`manifest.json` is missing, not JSON, fails its schema, or was edited by hand."""

    def __init__(self, path: Path | str, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{path}: {message}",
            hint=hint or "re-create the package with `cra repo pack`, or re-import a good copy",
        )
        self.path = path


@dataclass(frozen=True)
class Wheel:
    """One file of `packages/` with its size and sha256."""

    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Environment:
    """A set of pinned requirements serving the commits authored in [from, until).

    `start`/`until` are ISO dates; None means unbounded on that side.
    """

    id: str
    start: str | None
    until: str | None
    resolved_at: str
    exclude_newer: str | None
    date_bound: str
    requirements: tuple[str, ...]
    wheels: tuple[str, ...]
    sources: tuple[str, ...] = ()
    unusable: str | None = None
    """Why no environment could be made for this era (None: it is usable)."""
    attempts: tuple[str, ...] = ()
    """Each bound tried before the one applied, and why it failed."""
    collect: dict[str, Any] | None = None
    """The proof that it collects its era's tests (see `cra.env.prove`), when made."""

    @property
    def usable(self) -> bool:
        """Whether the era has an environment at all."""
        return self.unusable is None

    def serves(self, when: datetime) -> bool:
        """Whether a commit authored at `when` falls in this environment's range."""
        day = when.date().isoformat()
        return (self.start is None or day >= self.start) and (
            self.until is None or day < self.until
        )


@dataclass(frozen=True)
class Manifest:
    """The parsed, validated content of `manifest.json`."""

    name: str
    source: dict[str, str]
    python: str
    platform: str
    importable: dict[str, Any]
    test: dict[str, Any]
    domain: str
    environments: tuple[Environment, ...]
    wheels: tuple[Wheel, ...]
    created_at: str
    format_version: int = FORMAT_VERSION
    notes: tuple[str, ...] = field(default=())

    @property
    def head(self) -> str:
        """The packed head commit."""
        return self.source["head"]

    def wheel(self, file: str) -> Wheel:
        """The wheel entry called `file`; raise ManifestError if there is none."""
        for wheel in self.wheels:
            if wheel.file == file:
                return wheel
        raise ManifestError("manifest.json", f"no wheel {file!r} in the wheel list")

    def environment(self, env_id: str | None = None) -> Environment:
        """The environment `env_id`, or the newest usable one when `env_id` is None."""
        if env_id is None:
            usable = [e for e in self.environments if e.usable]
            return usable[-1] if usable else self.environments[-1]
        for env in self.environments:
            if env.id == env_id:
                return env
        known = ", ".join(e.id for e in self.environments)
        raise CraError(
            f"no environment {env_id!r} in package {self.name!r}", hint=f"known: {known}"
        )

    def environment_for(self, when: datetime) -> Environment:
        """The environment that serves a commit authored at `when`."""
        for env in self.environments:
            if env.serves(when):
                return env
        return self.environments[-1]

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data, without its checksum."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "created_at": self.created_at,
            "source": dict(self.source),
            "python": self.python,
            "platform": self.platform,
            "importable": self.importable,
            "test": self.test,
            "domain": self.domain,
            "environments": [
                {
                    "id": e.id,
                    "from": e.start,
                    "until": e.until,
                    "resolved_at": e.resolved_at,
                    "exclude_newer": e.exclude_newer,
                    "date_bound": e.date_bound,
                    "requirements": list(e.requirements),
                    "wheels": list(e.wheels),
                    "sources": list(e.sources),
                    "unusable": e.unusable,
                    "attempts": list(e.attempts),
                    "collect": e.collect,
                }
                for e in self.environments
            ],
            "wheels": [{"file": w.file, "size": w.size, "sha256": w.sha256} for w in self.wheels],
            "notes": list(self.notes),
        }


def canonical_checksum(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `data` minus its `checksum` field."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_text(manifest: Manifest) -> str:
    """The text of `manifest.json` for `manifest`, checksum included."""
    data = manifest.to_dict()
    data["checksum"] = canonical_checksum(data)
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write `manifest` to `path` atomically, with its checksum."""
    validate_manifest(json.loads(manifest_text(manifest)), path)
    atomic_write_text(path, manifest_text(manifest))


class _Checker:
    def __init__(self, path: Path | str) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> ManifestError:
        return ManifestError(self.path, f"{where}: {message}")

    def get(self, obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in obj:
            raise self.fail(f"{where}{key}", "missing")
        value = obj[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(f"{where}{key}", f"must be a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"{where}{key}", f"must be {names}, got {type(value).__name__}")
        return value

    def opt_str(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string or null, got {value!r}")
        return value

    def strings(self, obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.get(obj, key, list, where)
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value:
                raise self.fail(f"{where}{key}[{i}]", f"must be a non-empty string, got {value!r}")
        return tuple(values)


def _collect(c: _Checker, entry: dict[str, Any], where: str) -> dict[str, Any] | None:
    value = entry.get("collect")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise c.fail(f"{where}collect", "must be an object or null")
    return dict(value)


def validate_manifest(data: Any, path: Path | str = "manifest.json") -> Manifest:
    """Check `data` against the manifest schema and checksum; return the Manifest."""
    c = _Checker(path)
    if not isinstance(data, dict):
        raise c.fail("top level", "must be a JSON object")
    version = c.get(data, "format_version", int, "")
    if version != FORMAT_VERSION:
        raise ManifestError(
            path,
            f"format_version {version} is not supported (this cra reads {FORMAT_VERSION})",
            hint="use the cra version that packed it, or re-pack",
        )
    checksum = c.get(data, "checksum", str, "")
    actual = canonical_checksum(data)
    if checksum != actual:
        raise ManifestError(
            path,
            f"checksum {actual[:12]}… does not match the recorded {checksum[:12]}…: "
            "the manifest was edited by hand or corrupted",
        )
    name = c.get(data, "name", str, "")
    created_at = c.get(data, "created_at", str, "")
    source = c.get(data, "source", dict, "")
    for key in ("url", "ref", "head", "branch"):
        c.get(source, key, str, "source.")
    if not GIT_SHA_RE.match(source["head"]):
        raise c.fail("source.head", f"not a commit sha: {source['head']!r}")
    python = c.get(data, "python", str, "")
    if not PYTHON_RE.match(python):
        raise c.fail("python", f"must look like 3.X, got {python!r}")
    platform = c.get(data, "platform", str, "")
    mode, pythonpath, env = _importable(c, data)
    test = c.get(data, "test", dict, "")
    c.get(test, "command", str, "test.")
    for key in ("timeout_s", "per_test_timeout_s"):
        value = c.get(test, key, (int, float), "test.")
        if value <= 0:
            raise c.fail(f"test.{key}", f"must be greater than 0, got {value!r}")
    domain = c.get(data, "domain", str, "")
    wheels, seen = _wheels(c, data)
    envs = _environments(c, data, seen)
    notes = c.strings(data, "notes", "") if "notes" in data else ()
    return Manifest(
        name=name,
        source={k: source[k] for k in ("url", "ref", "head", "branch")},
        python=python,
        platform=platform,
        importable={"mode": mode, "pythonpath": list(pythonpath), "env": dict(env)},
        test=dict(test),
        domain=domain,
        environments=tuple(envs),
        wheels=tuple(wheels),
        created_at=created_at,
        format_version=version,
        notes=notes,
    )


def _importable(c: _Checker, data: dict[str, Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """`importable`: its mode, its `PYTHONPATH` entries (inside the checkout), its env."""
    importable = c.get(data, "importable", dict, "")
    mode = c.get(importable, "mode", str, "importable.")
    if mode not in MODES:
        raise c.fail("importable.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    pythonpath = c.strings(importable, "pythonpath", "importable.")
    for entry in pythonpath:
        if entry.startswith("/") or ".." in Path(entry).parts:
            raise c.fail("importable.pythonpath", f"{entry!r} escapes the checkout")
    env = c.get(importable, "env", dict, "importable.")
    for key, value in env.items():
        if not isinstance(value, str):
            raise c.fail(f"importable.env.{key}", "must be a string")
    return mode, pythonpath, env


def _wheels(c: _Checker, data: dict[str, Any]) -> tuple[list[Wheel], set[str]]:
    """The wheel list, each named once with its size and sha256, and the names listed."""
    wheels: list[Wheel] = []
    seen: set[str] = set()
    for i, entry in enumerate(c.get(data, "wheels", list, "")):
        where = f"wheels[{i}]."
        if not isinstance(entry, dict):
            raise c.fail(f"wheels[{i}]", "must be an object")
        file = c.get(entry, "file", str, where)
        if not WHEEL_RE.match(file) or "/" in file:
            raise c.fail(f"{where}file", f"not a wheel file name: {file!r}")
        if file in seen:
            raise c.fail(f"{where}file", f"{file} is listed twice")
        seen.add(file)
        size = c.get(entry, "size", int, where)
        if size < 0:
            raise c.fail(f"{where}size", f"must be 0 or more, got {size}")
        sha = c.get(entry, "sha256", str, where)
        if not SHA_RE.match(sha):
            raise c.fail(f"{where}sha256", f"not a sha256: {sha!r}")
        wheels.append(Wheel(file, size, sha))
    return wheels, seen


def _environments(c: _Checker, data: dict[str, Any], seen: set[str]) -> list[Environment]:
    """The environments (at least one), each with a unique id and wheels from the list."""
    envs: list[Environment] = []
    raw_envs = c.get(data, "environments", list, "")
    if not raw_envs:
        raise c.fail("environments", "must list at least one environment")
    ids: set[str] = set()
    for i, entry in enumerate(raw_envs):
        where = f"environments[{i}]."
        if not isinstance(entry, dict):
            raise c.fail(f"environments[{i}]", "must be an object")
        env_id = c.get(entry, "id", str, where)
        if env_id in ids:
            raise c.fail(f"{where}id", f"{env_id!r} is used twice")
        ids.add(env_id)
        env_wheels = c.strings(entry, "wheels", where)
        for file in env_wheels:
            if file not in seen:
                raise c.fail(f"{where}wheels", f"{file} is not in the wheel list")
        envs.append(
            Environment(
                id=env_id,
                start=c.opt_str(entry, "from", where),
                until=c.opt_str(entry, "until", where),
                resolved_at=c.get(entry, "resolved_at", str, where),
                exclude_newer=c.opt_str(entry, "exclude_newer", where),
                date_bound=c.get(entry, "date_bound", str, where),
                requirements=c.strings(entry, "requirements", where),
                wheels=env_wheels,
                sources=c.strings(entry, "sources", where),
                unusable=c.opt_str(entry, "unusable", where),
                attempts=c.strings(entry, "attempts", where) if "attempts" in entry else (),
                collect=_collect(c, entry, where),
            )
        )
    return envs


def load_manifest(path: Path) -> Manifest:
    """Read and validate `manifest.json` at `path`; raise ManifestError naming the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, "missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, f"cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(path, f"not valid JSON: {exc}") from exc
    return validate_manifest(data, path)
