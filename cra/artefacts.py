"""Artefact identity shared by the registry, training and serving: what a base model and
its tokenizer hash to, which files an adapter version is made of, where the base model
lives, and the checks that decide whether an adapter fits a served base.

A leaf module: it builds on the file system helpers and the workspace only, so every
layer that records, trains or serves an adapter can use it without importing another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cra.errors import CraError, UsageError
from cra.fsutil import sha256_file

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear projections an adapter targets: what training puts LoRA on and what vLLM's
LoRA layers cover here."""

RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The `--max-lora-rank` values vLLM accepts."""

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)


class IncompatibleAdapter(CraError, ValueError):
    """An adapter version the running server cannot serve."""


def _digest(files: Iterable[Path], root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(files):
        sha.update(path.relative_to(root).as_posix().encode() + b"\0")
        sha.update(sha256_file(path).encode() + b"\n")
    return sha.hexdigest()


def model_hashes(model_dir: Path) -> tuple[str, str]:
    """(content hash, tokenizer/chat-template hash) of a model directory: sha256 over the
    sha256 of its config and weight files, and of its tokenizer files."""
    root = Path(model_dir)
    if not (root / "config.json").is_file():
        raise UsageError(f"{root} is not a model directory (no config.json)")
    weights = [p for p in root.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    tokenizer = [root / n for n in _TOKENIZER_FILES if (root / n).is_file()]
    return _digest([root / "config.json", *weights], root), _digest(tokenizer, root)


def base_model_dir(base: str, root: Path) -> Path:
    """The base model directory named by `[model] base` (`base`; relative to the
    workspace `root`)."""
    if not base:
        raise UsageError(
            "no base model configured", hint="set [model] base in cra.toml to a local model path"
        )
    path = Path(base).expanduser()
    if not path.is_absolute():
        path = root / path
    if not (path / "config.json").is_file():
        raise UsageError(f"[model] base {path} is not a model directory (no config.json)")
    return path


@dataclass(frozen=True)
class AdapterVersion:
    """One registered adapter version, as the server needs it."""

    name: str
    version: int
    path: Path
    base_model_hash: str
    tokenizer_hash: str
    files_sha256: dict[str, str]

    @property
    def served_name(self) -> str:
        """The name vLLM serves it under: `NAME@vN`, never reused for other weights."""
        return f"{self.name}@v{self.version}"


def adapter_config(path: Path) -> dict[str, Any]:
    """The `adapter_config.json` of a PEFT adapter directory; IncompatibleAdapter when it
    is missing or not JSON."""
    try:
        return dict(json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise IncompatibleAdapter(f"{path} has no adapter_config.json") from None
    except ValueError as exc:
        raise IncompatibleAdapter(f"{path}/adapter_config.json is not JSON: {exc}") from None


def adapter_rank(path: Path) -> int:
    """The LoRA rank `r` of a PEFT adapter directory."""
    return int(adapter_config(path).get("r") or 0)


def check_files(version: AdapterVersion) -> None:
    """Refuse a version whose files differ from the sha256 recorded at registration."""
    for rel, expected in sorted(version.files_sha256.items()):
        path = version.path / rel
        if not path.is_file():
            raise IncompatibleAdapter(f"{version.served_name}: file {rel} is missing")
        if sha256_file(path) != expected:
            raise IncompatibleAdapter(
                f"{version.served_name}: file {rel} changed since it was registered",
                hint="an adapter version is immutable: train and register a new version",
            )


class ServedBase(Protocol):
    """What an adapter must match to be served: the base's hashes and the LoRA rank the
    server sized its slots for (a running server's state has them)."""

    base_hash: str
    tokenizer_hash: str
    max_lora_rank: int


def check_compatible(version: AdapterVersion, served: ServedBase) -> None:
    """Refuse, with the reason, a version the server of `served` cannot serve correctly."""
    check_files(version)
    config = adapter_config(version.path)
    _check_rank(version, int(config.get("r") or 0), served.max_lora_rank)
    _check_modules(version, config)
    _check_base(version, served)


def _check_rank(version: AdapterVersion, rank: int, max_rank: int) -> None:
    if rank > max_rank:
        raise IncompatibleAdapter(
            f"{version.served_name}: rank {rank} > the server's --max-lora-rank {max_rank}",
            hint="restart `cra serve` so it sizes its LoRA slots from the registry",
        )


def _check_modules(version: AdapterVersion, config: dict[str, Any]) -> None:
    if config.get("modules_to_save"):
        raise IncompatibleAdapter(
            f"{version.served_name}: has modules_to_save {config['modules_to_save']}, "
            "which vLLM does not serve"
        )
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    unsupported = sorted(set(targets) - set(LORA_TARGETS))
    if unsupported:
        raise IncompatibleAdapter(
            f"{version.served_name}: targets unsupported modules {', '.join(unsupported)}"
        )


def _check_base(version: AdapterVersion, served: ServedBase) -> None:
    if version.base_model_hash != served.base_hash:
        raise IncompatibleAdapter(
            f"{version.served_name}: trained on another base model "
            f"(hash {version.base_model_hash[:12]}, served {served.base_hash[:12]})"
        )
    if version.tokenizer_hash != served.tokenizer_hash:
        raise IncompatibleAdapter(
            f"{version.served_name}: trained with another tokenizer or chat template "
            f"(hash {version.tokenizer_hash[:12]}, served {served.tokenizer_hash[:12]})"
        )
