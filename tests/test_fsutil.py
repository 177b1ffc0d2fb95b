"""Trees from git archive land inside their folder, readable by the sandbox's uid."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from cra.fsutil import extract_tree


def _tar(members: list[tuple[str, str | None]]) -> bytes:
    """A tar of regular files (text) and symlinks (None text: name -> target given)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, text in members:
            info = tarfile.TarInfo(name)
            if text is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                data = text.encode()
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_links_out_of_the_tree_are_left_out_and_the_rest_lands(tmp_path: Path) -> None:
    """An absolute symlink (black's docs/authors.md) is skipped, never a crash."""
    dest = tmp_path / "tree"
    extract_tree(_tar([("docs/authors.md", None), ("src/a.py", "x = 1\n")]), dest)
    assert (dest / "src" / "a.py").read_text() == "x = 1\n"
    assert not (dest / "docs" / "authors.md").exists()
    assert not (dest / "docs" / "authors.md").is_symlink()


def test_the_tree_is_readable_by_other_users(tmp_path: Path) -> None:
    """The folder is 0755 even when made by mkdtemp (0700)."""
    dest = tmp_path / "t"
    dest.mkdir(mode=0o700)
    extract_tree(_tar([("a.py", "")]), dest)
    assert dest.stat().st_mode & 0o777 == 0o755
