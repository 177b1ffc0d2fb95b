"""Wheel file names: which pinned requirement a wheel provides, and for which Python."""

from __future__ import annotations

import platform
import sysconfig
from collections.abc import Iterable
from functools import lru_cache

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version


def platform_tag() -> str:
    """This machine's platform, as recorded in manifests (e.g. linux-x86_64)."""
    return f"{sysconfig.get_platform()}"


@lru_cache(maxsize=16)
def supported_tags(python: str) -> tuple[Tag, ...]:
    """Wheel tags an interpreter of version `python` (X.Y) on this machine accepts, best first."""
    major, minor = (int(x) for x in python.split("."))
    version = (major, minor)
    tags: list[Tag] = []
    if platform.python_implementation() == "CPython":
        tags.extend(cpython_tags(version))
    tags.extend(compatible_tags(version))
    return tuple(tags)


def parse_pin(pin: str) -> tuple[str, Version] | None:
    """(canonical name, version) of a `name==version` pin, or None if it is not one."""
    name, sep, version = pin.partition("==")
    if not sep:
        return None
    name = name.split("[", 1)[0].strip()
    try:
        return canonicalize_name(name), Version(version.split(";", 1)[0].strip())
    except InvalidVersion:
        return None


def wheel_provides(file: str) -> tuple[str, Version, frozenset[Tag]] | None:
    """(canonical name, version, tags) of a wheel file name, or None if it is not one."""
    try:
        name, version, _build, tags = parse_wheel_filename(file)
    except InvalidWheelFilename:
        return None
    return canonicalize_name(name), version, tags


def best_wheel(pin: str, files: Iterable[str], python: str) -> str | None:
    """The wheel among `files` that satisfies `pin` for Python `python`, best tag first."""
    parsed = parse_pin(pin)
    if parsed is None:
        return None
    name, version = parsed
    ranking = {tag: i for i, tag in enumerate(supported_tags(python))}
    best: tuple[int, str] | None = None
    for file in files:
        info = wheel_provides(file)
        if info is None or info[0] != name or info[1] != version:
            continue
        ranks = [ranking[t] for t in info[2] if t in ranking]
        if ranks and (best is None or min(ranks) < best[0]):
            best = (min(ranks), file)
    return best[1] if best else None
