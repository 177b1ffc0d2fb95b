"""Exact and near-duplicate removal, and the per-domain cap.

Exact duplicates share the normalised prompt and answers. Near-duplicates are found with
MinHash LSH (datasketch) and confirmed by the exact Jaccard similarity of the word
shingles of each row's task text and answers, not of its boilerplate (system prompt,
retrieved context), which would make every row of a repository look alike. Rows are
compared within their (adapter, technique) group; the eval split is kept first, so a
train row that repeats an eval row is the one that goes (contamination), and within a
split the older row stays.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from datasketch.lsh import _optimal_param

from cra.curation.rows import Row

_WORD = re.compile(r"\w+")
_MAX_HASH = (1 << 32) - 1
CHUNK = 20_000  # shingles per vectorised block: small enough to stay in cache


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: spreads CRC-32 values (which are linear) uniformly."""
    h = values.astype(np.uint64)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(_MAX_HASH)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(_MAX_HASH)
    h ^= h >> np.uint64(16)
    return h


def _crc_grams(text: str, size: int) -> list[int]:
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return [zlib.crc32(" ".join(words).encode())]
    return [
        zlib.crc32(" ".join(words[i : i + size]).encode()) for i in range(len(words) - size + 1)
    ]


def shingle_hashes(text: str, size: int) -> np.ndarray:
    """Sorted unique 32-bit hashes of the word `size`-grams of the lowercased text (of
    the whole text when it is shorter)."""
    return np.unique(_fmix32(np.array(_crc_grams(text, size), dtype=np.uint64)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if not len(a) and not len(b):
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def minhash_signatures(
    flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int = 1
) -> np.ndarray:
    """MinHash signatures of every row at once. `flat` holds all rows' shingle hashes
    end to end, row i starting at `offsets[i]` (each row has at least one). The hash
    functions are `num_perm` multiply-shift hashes (h(x) = (a*x + b mod 2^64) >> 32,
    a odd); a row's signature is the minimum of each over its shingles. Vectorised over
    blocks of rows (no per-row Python work)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    shift = np.uint64(32)
    rows = len(offsets)
    out = np.empty((rows, num_perm), dtype=np.uint64)
    ends = np.append(offsets[1:], len(flat))
    first = 0
    while first < rows:
        # the rows whose shingles fit in one cache-sized block (at least one row)
        last = max(first + 1, int(np.searchsorted(ends, offsets[first] + CHUNK, "right")))
        last = min(last, rows)
        lo, hi = int(offsets[first]), int(ends[last - 1])
        with np.errstate(over="ignore"):
            values = (flat[lo:hi, None] * a + b) >> shift
        out[first:last] = np.minimum.reduceat(values, offsets[first:last] - lo, axis=0)
        first = last
    return out


def band_keys(signatures: np.ndarray, threshold: float) -> list[list[int]]:
    """LSH band keys per row, with the (bands, rows per band) that datasketch's
    MinHashLSH picks for `threshold` (fewest weighted false positives and negatives)."""
    num_perm = signatures.shape[1]
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    mix = np.random.default_rng(0).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    keys = np.empty((signatures.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = signatures[:, band * rows : (band + 1) * rows]
            keys[:, band] = (block * mix).sum(axis=1) + np.uint64(band)
    return keys.tolist()


@dataclass
class DedupStats:
    """How many rows each kind of duplicate removed, per group."""

    exact: Counter[str] = field(default_factory=Counter)
    near: Counter[str] = field(default_factory=Counter)
    eval_contamination: Counter[str] = field(default_factory=Counter)


def deduplicate(
    eval_rows: Sequence[Row],
    train_rows: Sequence[Row],
    *,
    threshold: float,
    num_perm: int,
    shingle_words: int,
) -> tuple[list[Row], list[Row], DedupStats]:
    """Drop exact and near-duplicates within and across the splits; return what stays."""
    stats = DedupStats()
    ordered = [("eval", r) for r in eval_rows] + [("train", r) for r in train_rows]
    context: dict[str, list[int]] = {}  # a task's text is shingled once for its rows
    pieces: list[list[int]] = []
    for _, row in ordered:
        grams = _crc_grams(row.dedup_text, shingle_words)
        if row.dedup_context:
            shared = context.get(row.dedup_context)
            if shared is None:
                shared = context[row.dedup_context] = _crc_grams(row.dedup_context, shingle_words)
            grams = shared + grams
        pieces.append(grams)
    lengths = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    flat = _fmix32(
        np.fromiter(itertools.chain.from_iterable(pieces), np.uint64, int(lengths.sum()))
    )
    del pieces
    sets: dict[int, np.ndarray] = {}

    def shingles(n: int) -> np.ndarray:  # sorted unique, built only for LSH candidates
        found = sets.get(n)
        if found is None:
            found = sets[n] = np.unique(flat[offsets[n] : offsets[n] + lengths[n]])
        return found

    # LSH finds candidates at a looser threshold (with 48 permutations, 99.8% of pairs at
    # Jaccard 0.8 meet in a band at 0.5); the exact Jaccard of their shingles decides.
    keys = (
        band_keys(minhash_signatures(flat, offsets, num_perm), max(0.3, threshold - 0.3))
        if ordered
        else []
    )
    seen: dict[tuple[str, str], dict[str, str]] = {}  # group -> content key -> split
    tables: dict[tuple[str, str], list[dict[int, list[int]]]] = {}
    kept: dict[str, list[Row]] = {"eval": [], "train": []}
    for n, (split, row) in enumerate(ordered):
        name = "/".join(row.group)
        exact = seen.setdefault(row.group, {})
        key = row.content_key
        if key in exact:
            bucket = stats.eval_contamination if exact[key] != split else stats.exact
            bucket[name] += 1
            continue
        table = tables.get(row.group)
        if table is None:
            table = tables[row.group] = [{} for _ in keys[n]]
        candidates: set[int] = set()
        for band, band_key in enumerate(keys[n]):
            candidates.update(table[band].get(band_key, ()))
        similar = {
            ordered[c][0] for c in candidates if jaccard(shingles(n), shingles(c)) >= threshold
        }
        if similar:
            bucket = stats.near if split in similar else stats.eval_contamination
            bucket[name] += 1
            continue
        exact[key] = split
        for band, band_key in enumerate(keys[n]):
            table[band].setdefault(band_key, []).append(n)
        kept[split].append(row)
    return kept["eval"], kept["train"], stats


def effective_cap(cap: float, domains: int) -> float:
    """The cap that can hold: `cap`, or equal shares when there are too few domains."""
    if domains <= 0:
        return cap
    return max(cap, 1.0 / domains)


def stable_order(row: Row, salt: str | None = None) -> str:
    """A sort key giving a stable pseudo-random order (another one per `salt`), so which
    rows a cap or a sample drops does not depend on the order they were read in."""
    key = (
        f"{row.task_id}|{row.content_key}"
        if salt is None
        else f"{salt}|{row.task_id}|{row.content_key}"
    )
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def cap_domains(rows: Sequence[Row], cap: float) -> tuple[list[Row], Counter[str]]:
    """Keep at most `cap` of the rows from any one domain (dropping the least rows
    possible); return the rows kept, in their order, and the drops per domain."""
    counts = Counter(r.domain for r in rows)
    if not rows or cap >= 1.0 or len(counts) == 0:
        return list(rows), Counter()
    # The largest per-domain allowance m with m <= cap * sum(min(c, m)) holds the cap for
    # every domain; feasibility only gets harder as m grows past the smaller domains.
    limit = 0
    for m in range(max(counts.values()), 0, -1):
        if m <= cap * sum(min(c, m) for c in counts.values()) + 1e-9:
            limit = m
            break
    keep: set[int] = set()
    for domain, count in counts.items():
        members = [r for r in rows if r.domain == domain]
        if count > limit:
            members = sorted(members, key=stable_order)[:limit]
        keep.update(id(r) for r in members)
    dropped = Counter({d: c - min(c, limit) for d, c in counts.items() if c > limit})
    return [r for r in rows if id(r) in keep], dropped
