"""BM25 retrieval over a snapshot's definitions and file paths, with the task as query.

Each document is one definition: its qualified name, signature, docstring and the
path of its file, split into words (`snake_case` and `camelCase` broken apart). A file
with no definitions is one document of its path and module docstring-free name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import bm25s
import numpy as np

from cra.harness.index import SnapshotIndex

_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_STOP = """a an and are as at be but by for from has have in into is it its of on or that
    the this to was were will with when not no do does py self cls def class return none
    true false"""
STOPWORDS = frozenset(_STOP.split())


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; identifiers split at `_` and case changes; a light plural
    strip so `lists` meets `list`."""
    words = []
    for raw in _WORD.findall(text):
        word = raw.lower()
        if word in STOPWORDS or len(word) < 2:
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.append(word)
    return words


@dataclass(frozen=True)
class Hit:
    """A retrieved definition (or file, when `symbol` is None) and its BM25 score."""

    file: str
    symbol: str | None
    kind: str
    score: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as recorded in `retrievals.results`."""
        return {"file": self.file, "symbol": self.symbol, "kind": self.kind, "score": self.score}


def _documents(index: SnapshotIndex, exclude: set[str]) -> tuple[list[tuple], list[list[str]]]:
    keys: list[tuple] = []
    docs: list[list[str]] = []
    for path in sorted(index.parsed):
        if path in exclude:
            continue
        path_words = tokenize(path.replace("/", " "))
        symbols = index.symbols(path)
        if not symbols:
            keys.append((path, None, "file"))
            docs.append(path_words)
            continue
        for sym in symbols:
            words = tokenize(sym.qualname) * 2 + tokenize(sym.signature) + path_words
            if sym.docstring:
                words += tokenize(sym.docstring)
            keys.append((path, sym.qualname, sym.kind))
            docs.append(words)
    return keys, docs


def retrieve(
    index: SnapshotIndex, query: str, *, k: int, exclude: set[str] | None = None
) -> list[Hit]:
    """The top `k` definitions for `query`, best first; hits with score 0 are dropped.

    `exclude` names files to leave out (the harness leaves out test files)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    keys, docs = _documents(index, exclude or set())
    terms = tokenize(query)
    if not docs or not terms:
        return []
    retriever = bm25s.BM25()
    retriever.index(docs, show_progress=False)
    ids, scores = retriever.retrieve([terms], k=min(k, len(docs)), show_progress=False)
    hits = []
    for doc_id, score in zip(
        np.asarray(ids[0]).tolist(), np.asarray(scores[0]).tolist(), strict=True
    ):
        if score <= 0:
            continue
        path, symbol, kind = keys[doc_id]
        hits.append(Hit(path, symbol, kind, round(float(score), 6)))
    return hits
