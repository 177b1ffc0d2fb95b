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
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash, MinHashLSH

from cra.curation.rows import Row

_WORD = re.compile(r"\w+")


def _identity(value: int) -> int:
    return value


def shingle_hashes(text: str, size: int) -> np.ndarray:
    """Sorted unique 32-bit hashes (blake2b) of the word `size`-grams of the lowercased
    text (of the whole text when it is shorter)."""
    words = _WORD.findall(text.lower())
    grams = (
        [" ".join(words)]
        if len(words) <= size
        else {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
    )
    values = [
        int.from_bytes(hashlib.blake2b(g.encode("utf-8"), digest_size=4).digest(), "little")
        for g in grams
    ]
    return np.unique(np.array(values, dtype=np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if not len(a) and not len(b):
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


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
    hashes = [shingle_hashes(r.dedup_text, shingle_words) for _, r in ordered]
    signatures = MinHash.bulk([h.tolist() for h in hashes], num_perm=num_perm, hashfunc=_identity)
    seen: dict[tuple[str, str], dict[str, str]] = {}  # group -> content key -> split
    index: dict[tuple[str, str], MinHashLSH] = {}
    owner: dict[str, tuple[str, np.ndarray]] = {}  # LSH key -> split, shingles kept
    # LSH finds candidates at a looser threshold (few misses); the exact Jaccard of each
    # candidate's shingles then decides.
    loose = max(0.3, threshold - 0.2)
    kept: dict[str, list[Row]] = {"eval": [], "train": []}
    for n, ((split, row), signature) in enumerate(zip(ordered, signatures, strict=True)):
        name = "/".join(row.group)
        keys = seen.setdefault(row.group, {})
        key = row.content_key()
        if key in keys:
            bucket = stats.eval_contamination if keys[key] != split else stats.exact
            bucket[name] += 1
            continue
        lsh = index.get(row.group)
        if lsh is None:
            lsh = index[row.group] = MinHashLSH(threshold=loose, num_perm=num_perm)
        similar = [
            owner[k][0]
            for k in lsh.query(signature)
            if jaccard(hashes[n], owner[k][1]) >= threshold
        ]
        if similar:
            splits = set(similar)
            bucket = stats.near if split in splits else stats.eval_contamination
            bucket[name] += 1
            continue
        keys[key] = split
        lsh_key = f"{n}"
        lsh.insert(lsh_key, signature)
        owner[lsh_key] = (split, hashes[n])
        kept[split].append(row)
    return kept["eval"], kept["train"], stats


def effective_cap(cap: float, domains: int) -> float:
    """The cap that can hold: `cap`, or equal shares when there are too few domains."""
    if domains <= 0:
        return cap
    return max(cap, 1.0 / domains)


def _order(row: Row) -> str:
    # A stable pseudo-random order, so the rows a cap drops do not depend on run order.
    return hashlib.sha1(
        f"{row.task_id}|{row.content_key()}".encode(), usedforsecurity=False
    ).hexdigest()


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
            members = sorted(members, key=_order)[:limit]
        keep.update(id(r) for r in members)
    dropped = Counter({d: c - min(c, limit) for d, c in counts.items() if c > limit})
    return [r for r in rows if id(r) in keep], dropped
