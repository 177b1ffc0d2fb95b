"""The manifest's schema and self-checksum are enforced on every load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cra.repos.manifest import (
    Environment,
    Manifest,
    ManifestError,
    Wheel,
    canonical_checksum,
    load_manifest,
    write_manifest,
)

SHA = "a" * 64
HEAD = "b" * 40


def _manifest() -> Manifest:
    env = Environment(
        "2024",
        None,
        None,
        HEAD,
        None,
        "applied",
        ("pytest==8.0.0",),
        ("pytest-8.0.0-py3-none-any.whl",),
    )
    return Manifest(
        name="p",
        source={"url": "/x", "ref": "main", "head": HEAD, "branch": "main"},
        python="3.11",
        platform="linux-x86_64",
        importable={"mode": "pythonpath", "pythonpath": ["src"], "env": {}},
        test={"command": "python -m pytest", "timeout_s": 60, "per_test_timeout_s": 5},
        domain="general",
        environments=(env,),
        wheels=(Wheel("pytest-8.0.0-py3-none-any.whl", 10, SHA),),
        created_at="2024-01-01",
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    """A written manifest loads back equal and carries its canonical checksum."""
    path = tmp_path / "manifest.json"
    write_manifest(path, _manifest())
    assert load_manifest(path) == _manifest()
    data = json.loads(path.read_text())
    assert data["checksum"] == canonical_checksum(data)


def test_an_edit_by_hand_is_caught(tmp_path: Path) -> None:
    """A manifest edited by hand fails its checksum and is refused as edited by hand."""
    path = tmp_path / "manifest.json"
    write_manifest(path, _manifest())
    data = json.loads(path.read_text())
    data["test"]["command"] = "python -m pytest --co"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="edited by hand"):
        load_manifest(path)


def _resealed(tmp_path: Path, edit: object) -> Path:
    data = json.loads(json.dumps(_manifest().to_dict()))
    edit(data)  # type: ignore[operator]
    data["checksum"] = canonical_checksum(data)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["wheels"][0].update(sha256="xyz"), r"wheels\[0\]\.sha256: not a sha256"),
        (lambda d: d.pop("environments"), "environments: missing"),
        (lambda d: d.update(environments=[]), "at least one environment"),
        (lambda d: d["importable"].update(mode="magic"), "importable.mode: must be one of"),
        (lambda d: d["importable"].update(pythonpath=["../up"]), "escapes the checkout"),
        (lambda d: d["test"].update(timeout_s=0), r"test\.timeout_s: must be greater than 0"),
        (lambda d: d["wheels"][0].update(file="../x.whl"), "not a wheel file name"),
        (
            lambda d: d["environments"][0].update(wheels=["other-1-py3-none-any.whl"]),
            "is not in the wheel list",
        ),
        (lambda d: d.update(python="2.7"), "python: must look like 3.X"),
        (lambda d: d.update(format_version=9), "format_version 9 is not supported"),
    ],
)
def test_schema_errors_name_the_field(tmp_path: Path, edit: object, message: str) -> None:
    """A manifest that breaks the schema is refused with an error naming the field."""
    with pytest.raises(ManifestError, match=message):
        load_manifest(_resealed(tmp_path, edit))


def test_not_json_and_missing_are_clear(tmp_path: Path) -> None:
    """A missing manifest and one that is not JSON each get their own clear error."""
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path / "manifest.json")
