"""What an adapter's name and method say: valid names, `NAME@vN` references, and the
kind of artefact a version is (a LoRA adapter vLLM serves, or a ranker scored
in-process)."""

from __future__ import annotations

import re
from pathlib import Path

from cra.errors import UsageError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_REF = re.compile(r"^(?P<name>[^@\s]+)(?:@v?(?P<version>\d+))?$")

KINDS = ("lora", "ranker")
"""What a version is: a PEFT LoRA adapter the server loads, or a file ranker run in-process."""
RANKER_METHOD = "mnrl-bm25-hybrid"
METHOD_KINDS = {"sft": "lora", "dpo": "lora", RANKER_METHOD: "ranker"}
"""The kind of artefact each training method produces."""
NAME_KINDS = {"scope-ranker": "ranker"}
"""Adapter names that are not LoRA adapters (a name names one kind, for every version)."""


def method_kind(method: str) -> str:
    """The kind of version `method` trains (an unknown method: a LoRA adapter)."""
    return METHOD_KINDS.get(method, "lora")


def name_kind(name: str) -> str:
    """The kind every version of adapter `name` is."""
    return NAME_KINDS.get(name, "lora")


def check_name(name: str) -> str:
    """Return `name` if it is a valid adapter name, else raise UsageError."""
    if not _NAME.match(name or ""):
        raise UsageError(
            f"invalid adapter name {name!r}",
            hint="use lowercase letters, digits, '-' and '_' (e.g. scope, execute-code)",
        )
    return name


def parse_ref(text: str, *, need_version: bool = False) -> tuple[str, int | None]:
    """Split `NAME@vN` (or `NAME`) into name and version."""
    found = _REF.match(text.strip())
    if found is None:
        raise UsageError(f"cannot read adapter reference {text!r}", hint="write NAME@vN")
    version = int(found["version"]) if found["version"] else None
    if need_version and version is None:
        raise UsageError(f"{text!r} names no version", hint=f"write {text}@vN")
    return check_name(found["name"]), version


def parse_versioned(text: str) -> tuple[str, int]:
    """Split `NAME@vN` into name and version; UsageError when it names no version."""
    name, version = parse_ref(text, need_version=True)
    if version is None:  # parse_ref refuses it already; this narrows the type
        raise UsageError(f"{text!r} names no version", hint=f"write {text}@vN")
    return name, version


def check_staged(name: str, method: str, staged: Path) -> None:
    """Refuse a staged folder that is not what its method trains, or a method whose kind
    is not the kind of the name."""
    kind = method_kind(method)
    if kind != name_kind(name):
        raise UsageError(f"{name} holds {name_kind(name)} versions, not a {kind} ({method})")
    if kind == "ranker":
        if not (staged / "ranker.json").is_file():
            raise UsageError(f"{staged} is not a ranker directory (no ranker.json)")
        return
    if not (staged / "adapter_config.json").is_file():
        raise UsageError(f"{staged} is not a PEFT adapter directory (no adapter_config.json)")
