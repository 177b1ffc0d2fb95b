"""Index a commit's Python files into `curated.db`, parsing each blob only once.

Parsed content is keyed by git blob sha: consecutive commits share most blobs, so a
commit re-parses only the files that changed since any commit indexed before.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from cra.db import transaction
from cra.fsutil import now_iso
from cra.git import cat_blobs, git_bytes
from cra.harness.pyparse import Import, ParsedFile, Symbol, parse_python

MAX_FILE_BYTES = 1_000_000
_CHUNK = 500


def python_blobs(repo_dir: Path, sha: str) -> dict[str, str]:
    """Map each Python file path in commit `sha` to its blob sha (symlinks excluded)."""
    out = git_bytes("ls-tree", "-r", "-z", "--full-tree", sha, cwd=repo_dir)
    files: dict[str, str] = {}
    for entry in out.split(b"\0"):
        if not entry:
            continue
        meta, _, raw_path = entry.partition(b"\t")
        mode, kind, blob = meta.split(b" ")
        path = raw_path.decode("utf-8", "surrogateescape")
        if kind == b"blob" and mode in (b"100644", b"100755") and path.endswith(".py"):
            files[path] = blob.decode()
    return files


def read_blobs(repo_dir: Path, shas: list[str]) -> dict[str, bytes]:
    """Read blobs as stored through one `git cat-file --batch` process (no filter or
    textconv applies); shas that are not blobs are left out."""
    return {sha: data for sha, (kind, data) in cat_blobs(repo_dir, shas).items() if kind == "blob"}


@dataclass(frozen=True)
class SnapshotIndex:
    """Every Python file of one commit, with its definitions and imports."""

    sha: str
    files: dict[str, str]
    parsed: dict[str, ParsedFile]
    reparsed: int
    reused: int

    def symbols(self, path: str) -> tuple[Symbol, ...]:
        """The definitions in `path` (empty if it is not an indexed Python file)."""
        entry = self.parsed.get(path)
        return entry.symbols if entry else ()

    def imports(self, path: str) -> tuple[Import, ...]:
        """The imports in `path`."""
        entry = self.parsed.get(path)
        return entry.imports if entry else ()

    def errors(self) -> dict[str, str]:
        """Files that did not fully parse, and why."""
        return {
            path: entry.parse_error
            for path, entry in self.parsed.items()
            if entry.parse_error is not None
        }


@dataclass
class Indexer:
    """Indexes commits of one repository into `curated.db`, with an in-memory cache."""

    curated: sqlite3.Connection
    repo_dir: Path
    cache_size: int = 20_000
    _cache: OrderedDict[str, ParsedFile] = field(default_factory=OrderedDict)

    def _remember(self, blob: str, parsed: ParsedFile) -> None:
        self._cache[blob] = parsed
        self._cache.move_to_end(blob)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _load(self, blobs: list[str]) -> dict[str, ParsedFile]:
        loaded: dict[str, ParsedFile] = {}
        for i in range(0, len(blobs), _CHUNK):
            chunk = blobs[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.curated.execute(
                f"SELECT blob_sha, parse_error, line_count FROM blobs WHERE blob_sha IN ({marks})",
                chunk,
            ).fetchall()
            if not rows:
                continue
            found = [r[0] for r in rows]
            fmarks = ",".join("?" * len(found))
            symbols: dict[str, list[Symbol]] = {b: [] for b in found}
            for r in self.curated.execute(
                "SELECT blob_sha, kind, name, qualname, start_line, end_line, signature, "
                f"docstring FROM symbols WHERE blob_sha IN ({fmarks}) ORDER BY id",
                found,
            ):
                symbols[r[0]].append(Symbol(r[1], r[2], r[3], r[4], r[5], r[6] or "", r[7]))
            imports: dict[str, list[Import]] = {b: [] for b in found}
            for r in self.curated.execute(
                "SELECT blob_sha, module, name, alias, level, line FROM imports "
                f"WHERE blob_sha IN ({fmarks}) ORDER BY id",
                found,
            ):
                imports[r[0]].append(Import(r[1], r[2], r[3], r[4], r[5]))
            for blob, error, lines in rows:
                loaded[blob] = ParsedFile(tuple(symbols[blob]), tuple(imports[blob]), error, lines)
        return loaded

    def _store(self, parsed: dict[str, ParsedFile]) -> None:
        now = now_iso()
        with transaction(self.curated):
            for blob, entry in parsed.items():
                inserted = self.curated.execute(
                    "INSERT OR IGNORE INTO blobs (blob_sha, language, parse_error, line_count, "
                    "parsed_at) VALUES (?, 'python', ?, ?, ?)",
                    (blob, entry.parse_error, entry.line_count, now),
                ).rowcount
                if not inserted:
                    continue  # another process indexed it meanwhile
                self.curated.executemany(
                    "INSERT INTO symbols (blob_sha, kind, name, qualname, start_line, end_line, "
                    "signature, docstring) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            blob,
                            s.kind,
                            s.name,
                            s.qualname,
                            s.start_line,
                            s.end_line,
                            s.signature,
                            s.docstring,
                        )
                        for s in entry.symbols
                    ],
                )
                self.curated.executemany(
                    "INSERT INTO imports (blob_sha, module, name, alias, level, line) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(blob, i.module, i.name, i.alias, i.level, i.line) for i in entry.imports],
                )

    def sharing_cache(self, repo_dir: Path) -> Indexer:
        """An indexer reading blobs from `repo_dir` that shares this one's cache and DB."""
        return Indexer(self.curated, repo_dir, self.cache_size, self._cache)

    def parse_blobs(self, blobs: list[str]) -> tuple[dict[str, ParsedFile], int]:
        """ParsedFile for each blob sha, from memory, the DB, or by parsing; and how many
        had to be parsed now."""
        result: dict[str, ParsedFile] = {}
        missing = []
        for blob in dict.fromkeys(blobs):
            hit = self._cache.get(blob)
            if hit is not None:
                result[blob] = hit
            else:
                missing.append(blob)
        loaded = self._load(missing)
        for blob, entry in loaded.items():
            result[blob] = entry
            self._remember(blob, entry)
        to_parse = [b for b in missing if b not in loaded]
        fresh: dict[str, ParsedFile] = {}
        for blob, data in read_blobs(self.repo_dir, to_parse).items():
            if len(data) > MAX_FILE_BYTES:
                error = f"not indexed: {len(data)} bytes is over {MAX_FILE_BYTES}"
                fresh[blob] = ParsedFile((), (), error, data.count(b"\n"))
            else:
                fresh[blob] = parse_python(data)
        if fresh:
            self._store(fresh)
        for blob, entry in fresh.items():
            result[blob] = entry
            self._remember(blob, entry)
        return result, len(fresh)

    def index(self, sha: str) -> SnapshotIndex:
        """Index every Python file of commit `sha`."""
        files = python_blobs(self.repo_dir, sha)
        by_blob, reparsed = self.parse_blobs(list(files.values()))
        parsed = {path: by_blob[blob] for path, blob in files.items() if blob in by_blob}
        return SnapshotIndex(sha, files, parsed, reparsed, len(set(files.values())) - reparsed)
