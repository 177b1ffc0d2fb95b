"""Manifest signatures: what verifies, what does not, and what is never trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cra.repos.signing import (
    SIGNATURE_NAME,
    SigningKeyError,
    check_signature,
    load_or_create_key,
    parse_public_key,
    public_key_text,
    sign_package,
    trusted_keys,
)


def _package(root: Path, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {"name": "demo", "source": {"head": "a" * 40}, "checksum": "x"}
    data.update(fields)
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return data


def test_a_signed_manifest_verifies_with_the_signing_key(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys" / "signing.key")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    check = check_signature(tmp_path / "pkg", data, [public])
    assert check.ok and check.signed and check.key == public


def test_the_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    first = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    again = load_or_create_key(path)
    assert public_key_text(first.public_key()) == public_key_text(again.public_key())


def test_an_edited_manifest_no_longer_verifies(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    data["source"] = {"head": "b" * 40}
    check = check_signature(tmp_path / "pkg", data, [public])
    assert not check.ok and check.signed and "not valid" in check.detail


def test_a_rename_keeps_the_signature_valid(tmp_path: Path) -> None:
    """An import may rename a package; the name is not signed, everything else is."""
    key = load_or_create_key(tmp_path / "k")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    data["name"] = "other"
    data["checksum"] = "recomputed"
    assert check_signature(tmp_path / "pkg", data, [public]).ok


def test_a_key_not_trusted_is_refused_and_named(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k")
    other = load_or_create_key(tmp_path / "other")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    check = check_signature(tmp_path / "pkg", data, [public_key_text(other.public_key())])
    assert not check.ok and check.key == public and "not a trusted key" in check.detail


def test_a_signature_resigned_with_another_key_claiming_the_trusted_one_fails(
    tmp_path: Path,
) -> None:
    """A forger who names the trusted key in the record cannot make its signature."""
    key = load_or_create_key(tmp_path / "k")
    forger = load_or_create_key(tmp_path / "forger")
    data = _package(tmp_path / "pkg")
    trusted = public_key_text(key.public_key())
    sign_package(tmp_path / "pkg", forger)
    record = json.loads((tmp_path / "pkg" / SIGNATURE_NAME).read_text())
    record["key"] = trusted
    (tmp_path / "pkg" / SIGNATURE_NAME).write_text(json.dumps(record))
    assert not check_signature(tmp_path / "pkg", data, [trusted]).ok


def test_unsigned_and_malformed_signatures_are_reported_not_raised(tmp_path: Path) -> None:
    data = _package(tmp_path / "pkg")
    assert check_signature(tmp_path / "pkg", data, []).detail == "unsigned"
    sig = tmp_path / "pkg" / SIGNATURE_NAME
    for text, why in (
        (b"\xff\xfe", "not JSON"),
        (b"[]", "unknown format"),
        (b'{"format": 1}', "lacks"),
    ):
        sig.write_bytes(text)
        check = check_signature(tmp_path / "pkg", data, [])
        assert not check.ok and why in check.detail


def test_a_signature_that_is_a_link_fifo_or_huge_is_never_read(tmp_path: Path) -> None:
    data = _package(tmp_path / "pkg")
    secret = tmp_path / "secret"
    secret.write_text('{"format": 1, "key": "k", "signature": "s"}')
    sig = tmp_path / "pkg" / SIGNATURE_NAME
    sig.symlink_to(secret)
    assert "cannot be opened" in check_signature(tmp_path / "pkg", data, []).detail
    sig.unlink()
    os.mkfifo(sig)
    assert "regular" in check_signature(tmp_path / "pkg", data, []).detail
    sig.unlink()
    sig.write_bytes(b" " * 10_000)
    assert "regular" in check_signature(tmp_path / "pkg", data, []).detail


def test_configured_keys_are_checked_and_the_own_key_is_trusted(tmp_path: Path) -> None:
    own = load_or_create_key(tmp_path / "k")
    other = public_key_text(load_or_create_key(tmp_path / "o").public_key())
    keys = trusted_keys([other], own)
    assert keys == (other, public_key_text(own.public_key()))
    with pytest.raises(SigningKeyError, match="not an ed25519 public key"):
        trusted_keys(["ssh-ed25519 AAAA"], None)
    with pytest.raises(SigningKeyError, match="not an ed25519 public key"):
        parse_public_key("ed25519:!!!")
