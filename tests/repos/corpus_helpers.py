"""Helpers for the corpus tests: corpus files, a network namespace with no interfaces,
and tampering with an export (a folder or a tar) the way a bad USB stick would."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import cra

ROOT = Path(cra.__file__).resolve().parents[1]


def write_corpus(
    path: Path, entries: list[dict[str, object]], defaults: dict | None = None
) -> Path:
    """A corpus file at `path`: `[defaults]` (when given), then one `[[repo]]` per entry."""

    def line(key: str, value: object) -> str:
        return f"{key} = {json.dumps(value)}"  # JSON scalars and lists are TOML too

    text = ""
    if defaults:
        text += "[defaults]\n" + "".join(line(k, v) + "\n" for k, v in defaults.items()) + "\n"
    for entry in entries:
        text += "[[repo]]\n" + "".join(line(k, v) + "\n" for k, v in entry.items()) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def netns_available() -> bool:
    """Whether `unshare -n` (a new network namespace) is permitted here."""
    if shutil.which("unshare") is None:
        return False
    proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return proc.returncode == 0


def cra_offline(workspace: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`cra -w WORKSPACE ARGS...` in a new network namespace: no interface but a downed
    loopback, so nothing can reach a network."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    return subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "cra", "-w", str(workspace), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def flip_byte(path: Path) -> None:
    """Change one byte in the middle of the file at `path`."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def flipped(data: bytes) -> bytes:
    """`data` with its middle byte changed."""
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF
    return bytes(out)


def rewrite_tar(
    source: Path,
    dest: Path,
    change: dict[str, Callable[[bytes], bytes]] | None = None,
    extra: list[tarfile.TarInfo] | None = None,
) -> Path:
    """A copy of the tar `source` at `dest`, each member named in `change` passed through
    its function, and the `extra` members (links, say) appended."""
    change = change or {}
    with tarfile.open(source) as old, tarfile.open(dest, "w") as new:
        for member in old.getmembers():
            if not member.isfile():
                new.addfile(member)
                continue
            stream = old.extractfile(member)
            assert stream is not None
            data = stream.read()
            if member.name in change:
                data = change[member.name](data)
                member.size = len(data)
            new.addfile(member, io.BytesIO(data))
        for member in extra or []:
            new.addfile(member)
    return dest


def symlink_member(name: str, target: str) -> tarfile.TarInfo:
    """A tar member `name` that is a symlink to `target`."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info
