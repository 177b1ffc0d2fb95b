"""Manifest signatures: what verifies, what does not, and what is never trusted."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cra.cli import cli
from cra.repos.manifest import canonical_checksum
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
from cra.workspace import Workspace
from tests.helpers import signer_of, trust_key


def _package(root: Path, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {"name": "demo", "source": {"head": "a" * 40}, "checksum": "x"}
    data.update(fields)
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return data


def test_a_signed_manifest_verifies_with_the_signing_key(tmp_path: Path) -> None:
    """A signed package verifies as trusted under its signing key."""
    key = load_or_create_key(tmp_path / "keys" / "signing.key")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    check = check_signature(tmp_path / "pkg", data, [public])
    assert check.ok and check.state == "trusted" and check.key == public


def test_the_key_file_is_private_and_reused(tmp_path: Path) -> None:
    """The signing key file is created private (0600 in a 0700 folder) and reused after."""
    path = tmp_path / "keys" / "signing.key"
    first = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    again = load_or_create_key(path)
    assert public_key_text(first.public_key()) == public_key_text(again.public_key())


def test_an_edited_manifest_no_longer_verifies(tmp_path: Path) -> None:
    """A manifest changed after signing reports its signature invalid."""
    key = load_or_create_key(tmp_path / "k")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    data["source"] = {"head": "b" * 40}
    check = check_signature(tmp_path / "pkg", data, [public])
    assert check.state == "invalid" and "not valid" in check.detail


def test_a_rename_keeps_the_signature_valid(tmp_path: Path) -> None:
    """An import may rename a package; the name is not signed, everything else is."""
    key = load_or_create_key(tmp_path / "k")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    data["name"] = "other"
    data["checksum"] = "recomputed"
    assert check_signature(tmp_path / "pkg", data, [public]).ok


def test_a_key_not_trusted_is_refused_and_named(tmp_path: Path) -> None:
    """A signature by an untrusted key is reported untrusted, naming the key."""
    key = load_or_create_key(tmp_path / "k")
    other = load_or_create_key(tmp_path / "other")
    data = _package(tmp_path / "pkg")
    public = sign_package(tmp_path / "pkg", key)
    check = check_signature(tmp_path / "pkg", data, [public_key_text(other.public_key())])
    assert check.state == "untrusted" and check.key == public
    assert "not a trusted key" in check.detail


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
    """Missing or malformed signatures are reported as failed checks, never raised."""
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
    """A signature file that is a link, a FIFO or oversized is refused without being read."""
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
    """Configured trusted keys are parsed strictly and the own signing key is always trusted."""
    own = load_or_create_key(tmp_path / "k")
    other = public_key_text(load_or_create_key(tmp_path / "o").public_key())
    keys = trusted_keys([other], own)
    assert keys == (other, public_key_text(own.public_key()))
    with pytest.raises(SigningKeyError, match="not an ed25519 public key"):
        trusted_keys(["ssh-ed25519 AAAA"], None)
    with pytest.raises(SigningKeyError, match="not an ed25519 public key"):
        parse_public_key("ed25519:!!!")


# --- through import and verify --------------------------------------------------------


def _airgapped(tmp_path: Path) -> Path:
    from cra.workspace import init_workspace

    return init_workspace(tmp_path / "airgapped").workspace.root


def _import(root: Path, source: Path, *flags: str) -> Result:
    return CliRunner().invoke(cli, ["-w", str(root), "repo", "import", str(source), *flags])


def _reseal(package: Path, edit: Callable[[dict], None]) -> None:
    """Edit the manifest and recompute its checksum, as a tamperer would."""
    path = package / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    data["checksum"] = canonical_checksum(data)
    path.write_text(json.dumps(data, indent=2))


def test_a_manifest_edited_with_its_checksum_recomputed_is_refused(
    packed: Path, tmp_path: Path
) -> None:
    """The checksum catches accidents; the signature catches tampering, even with
    --allow-unsigned."""
    root = _airgapped(tmp_path)
    trust_key(root, signer_of(packed))
    usb = tmp_path / "usb" / "tally"
    shutil.copytree(packed, usb, symlinks=True)
    _reseal(usb, lambda d: d["importable"].update(mode="editable"))
    for flags in ((), ("--allow-unsigned",)):
        result = _import(root, usb, *flags)
        assert result.exit_code == 1, result.output
        assert "signature check failed" in result.output and "is not valid" in result.output
    assert not (root / "repos" / "tally").exists()


def test_unsigned_and_untrusted_packages_need_allow_unsigned(packed: Path, tmp_path: Path) -> None:
    """Importing an unsigned or untrusted package fails unless --allow-unsigned is given."""
    root = _airgapped(tmp_path)
    usb = tmp_path / "usb" / "tally"
    shutil.copytree(packed, usb, symlinks=True)
    untrusted = _import(root, usb)
    assert untrusted.exit_code == 1
    assert "not a trusted key" in untrusted.output and "trusted_keys" in untrusted.output
    (usb / SIGNATURE_NAME).unlink()
    unsigned = _import(root, usb)
    assert unsigned.exit_code == 1 and "signature check failed: unsigned" in unsigned.output
    accepted = _import(root, usb, "--allow-unsigned")
    assert accepted.exit_code == 0, accepted.output
    assert "unsigned: accepted (--allow-unsigned)" in accepted.output


def test_a_trusted_signer_imports_and_a_rename_still_verifies(packed: Path, tmp_path: Path) -> None:
    """A package from a trusted signer imports, and under a new name still passes the signature."""
    root = _airgapped(tmp_path)
    trust_key(root, signer_of(packed))
    result = _import(root, packed, "--name", "copy")
    assert result.exit_code == 0, result.output
    verify = CliRunner().invoke(cli, ["-w", str(root), "repo", "verify", "copy", "--json"])
    checks = {c["name"]: c["ok"] for c in json.loads(verify.output)["checks"]}
    assert verify.exit_code == 0 and checks["signature"]


def test_repo_key_prints_the_key_pack_signs_with(packed: Path, workspace: Workspace) -> None:
    """repo key prints the public key that pack signs with and the private key's file."""
    result = CliRunner().invoke(cli, ["repo", "key", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["public_key"] == signer_of(packed)
    assert data["private_key_file"] == "keys/signing.key"


def test_a_malformed_trusted_key_in_cra_toml_is_a_config_error(tmp_path: Path) -> None:
    """A malformed key in repos.trusted_keys of cra.toml is a config error naming the setting."""
    root = _airgapped(tmp_path)
    trust_key(root, "ssh-ed25519 AAAA")
    result = CliRunner().invoke(cli, ["-w", str(root), "repo", "list"])
    assert result.exit_code != 0 and "repos.trusted_keys" in result.output
