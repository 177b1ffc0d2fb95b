"""File helpers every writer uses: sha256, atomic writes, UTC timestamps."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cra.errors import CraError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    Readers see the old content or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def now_iso() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(UTC).isoformat()


def _skip_unsafe(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, except that an unsafe member (a link out of the tree, an
    absolute path) is left out instead of stopping the extraction."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def extract_tree(data: bytes, dest: Path) -> None:
    """Extract a tree that `git archive` wrote into `dest`, readable by every user (the
    sandbox's unprivileged uid reads it). Links out of the tree are left out: repository
    content never makes cra write or point outside `dest`. An archive that cannot be read
    raises CraError."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(dest, filter=_skip_unsafe)  # noqa: S202 - filtered above
    except tarfile.TarError as exc:
        raise CraError(f"cannot extract the tree into {dest}: {exc}") from exc
    dest.chmod(0o755)
