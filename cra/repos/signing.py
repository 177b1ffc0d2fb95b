"""Signatures on repo packages that cross the air gap: ed25519 over the manifest.

The manifest's own checksum catches accidents, not tampering: anyone who edits it can
recompute it. A signature by a key of the connected machine that packed it can only be
made with that key. `cra repo pack` (and `cra env prove --adjust`, which re-pins an era)
sign with the workspace's key, `keys/signing.key`, made on first use. `cra repo import`
and `cra repo verify` check the signature against the keys `[repos] trusted_keys` lists in
`cra.toml`, plus the workspace's own; an unsigned package, or one signed by a key not
trusted, is refused unless the user says otherwise.

What is signed is the manifest's canonical JSON without its `checksum` and its `name`
(an import may rename a package), under a context string, so a signature made for one
purpose never verifies for another. The manifest pins everything else in the package:
the sha256 of every wheel and the head commit, whose history git's object ids bind.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cra.errors import CraError
from cra.fsutil import atomic_write_bytes, atomic_write_text

SIGNATURE_NAME = "manifest.sig"
KEY_FILE = Path("keys") / "signing.key"
KEY_PREFIX = "ed25519:"
CONTEXT = b"cra repo package manifest v1\n"
SIGNATURE_FORMAT = 1
MAX_SIGNATURE_BYTES = 4096
UNSIGNED_HINT = (
    "pack it on a machine whose key you trust, add that key (`cra repo key` there) to "
    "[repos] trusted_keys in cra.toml, or pass --allow-unsigned to accept it anyway"
)


class SigningKeyError(CraError, ValueError):
    """A public key in `cra.toml`, or the workspace's signing key, cannot be read."""


STATES = ("trusted", "unsigned", "untrusted", "invalid")


@dataclass(frozen=True)
class SignatureCheck:
    """What the signature of one package says: `trusted` (valid, by a trusted key),
    `unsigned`, `untrusted` (valid, by a key not trusted) or `invalid` (unreadable, or
    not made by the key it names over this manifest)."""

    state: str
    key: str | None
    detail: str

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"SignatureCheck.state must be one of {STATES}, got {self.state!r}")

    @property
    def ok(self) -> bool:
        """Whether the package is signed, validly, by a trusted key."""
        return self.state == "trusted"


def public_key_text(key: Ed25519PublicKey) -> str:
    """`ed25519:BASE64`, the form `cra repo key` prints and `trusted_keys` lists."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str, where: str = "trusted_keys") -> Ed25519PublicKey:
    """The public key written as `ed25519:BASE64`; SigningKeyError names what is wrong."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise SigningKeyError(
            f"{where}: {text!r} is not an ed25519 public key",
            hint="write keys as printed by `cra repo key`: ed25519:BASE64",
        )
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError(
            f"{where}: {text!r} is not an ed25519 public key ({exc})",
            hint="copy the whole line `cra repo key` prints",
        ) from exc


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The private key at `path`, made there (mode 0600, atomically) when missing."""
    if path.exists():
        return load_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    atomic_write_bytes(path, pem)
    path.chmod(0o600)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """The private key stored at `path`."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"{path.name}: the signing key cannot be read ({exc})",
            hint="restore it from a backup, or move it aside to make a new key "
            "(packages signed with the old one then need the old public key trusted)",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path.name}: the signing key is not an ed25519 key")
    return key


def signed_payload(manifest_data: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without `checksum` and `name`."""
    body = {k: v for k, v in manifest_data.items() if k not in ("checksum", "name")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return CONTEXT + text.encode("utf-8")


def sign_package(root: Path, key: Ed25519PrivateKey) -> str:
    """Sign the manifest of the package at `root`, writing `manifest.sig`; return the
    public key it was signed with."""
    data = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    signature = key.sign(signed_payload(data))
    public = public_key_text(key.public_key())
    record = {
        "format": SIGNATURE_FORMAT,
        "key": public,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    atomic_write_text(root / SIGNATURE_NAME, json.dumps(record, indent=2) + "\n")
    return public


def _read_record(path: Path) -> dict[str, Any] | str:
    """The signature record, or why it cannot be read (no link, a regular small file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"{SIGNATURE_NAME} cannot be opened ({exc.strerror})"
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SIGNATURE_BYTES:
            return f"{SIGNATURE_NAME} is not a small regular file"
        raw = fh.read(MAX_SIGNATURE_BYTES + 1)
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:
        return f"{SIGNATURE_NAME} is not JSON"
    if not isinstance(record, dict) or record.get("format") != SIGNATURE_FORMAT:
        return f"{SIGNATURE_NAME} has an unknown format"
    if not isinstance(record.get("key"), str) or not isinstance(record.get("signature"), str):
        return f"{SIGNATURE_NAME} lacks its key or signature"
    return record


def check_signature(
    root: Path, manifest_data: dict[str, Any], trusted: Sequence[str]
) -> SignatureCheck:
    """Whether the package at `root` carries a valid signature of its manifest by one of
    the `trusted` public keys (never raises for a bad package)."""
    path = root / SIGNATURE_NAME
    if not os.path.lexists(path):
        return SignatureCheck("unsigned", None, "unsigned")
    record = _read_record(path)
    if isinstance(record, str):
        return SignatureCheck("invalid", None, record)
    key_text = record["key"]
    try:
        key = parse_public_key(key_text, SIGNATURE_NAME)
        signature = base64.b64decode(record["signature"], validate=True)
        key.verify(signature, signed_payload(manifest_data))
    except (SigningKeyError, binascii.Error, ValueError, InvalidSignature):
        return SignatureCheck("invalid", key_text, f"the signature by {key_text} is not valid")
    if key_text not in trusted:
        return SignatureCheck(
            "untrusted", key_text, f"signed by {key_text}, which is not a trusted key"
        )
    return SignatureCheck("trusted", key_text, f"signed by {key_text}")


def trusted_keys(configured: Sequence[str], own: Ed25519PrivateKey | None) -> tuple[str, ...]:
    """The keys a package may be signed by: those configured (each checked) and the
    workspace's own."""
    keys = [public_key_text(parse_public_key(k)) for k in configured]
    if own is not None:
        keys.append(public_key_text(own.public_key()))
    return tuple(dict.fromkeys(keys))


def key_path(workspace_root: Path) -> Path:
    """Where a workspace keeps its signing key."""
    return workspace_root / KEY_FILE


def workspace_key(workspace_root: Path) -> Ed25519PrivateKey:
    """The workspace's signing key, made on first use."""
    return load_or_create_key(key_path(workspace_root))


@dataclass(frozen=True)
class Trust:
    """Which signatures a verification accepts: packages signed by one of `keys`; and,
    when `allow_unsigned`, unsigned ones and ones signed by a key not listed (a signature
    that does not verify is refused either way: the package changed after signing)."""

    keys: tuple[str, ...]
    allow_unsigned: bool = False

    @classmethod
    def of_workspace(
        cls, workspace_root: Path, configured: Sequence[str], *, allow_unsigned: bool = False
    ) -> Trust:
        """The configured keys and the workspace's own (when it has one; none is made)."""
        path = key_path(workspace_root)
        own = load_key(path) if path.exists() else None
        return cls(trusted_keys(configured, own), allow_unsigned)

    def accepts(self, check: SignatureCheck) -> bool:
        """Whether a package with this signature check may be used."""
        if check.ok:
            return True
        return self.allow_unsigned and check.state in ("unsigned", "untrusted")
