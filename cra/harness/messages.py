"""Commit messages as task descriptions: every word list and threshold in one place.

A subject is first cleaned and split (:func:`parse_subject`): a conventional-commit type
(`feat: `, `fix(parser): `, `feat!: `, :data:`CONVENTIONAL_TYPES`) and component prefixes
(`aiohttp: `, `tests/foo: `, `[core] `) come off, and the type is kept for the record. The
rest qualifies when it
- starts with an imperative verb from :data:`GOOD_VERBS` (CommitPackFT style: the verb
  must be followed by a space, so "Fixed", "fixing" and "Fixes" do not pass) or with a
  negative imperative (:data:`NEGATIONS`: "Don't", "Do not", "Never");
- has between :data:`MIN_WORDS` and :data:`MAX_WORDS` words and between
  :data:`MIN_CHARS` and :data:`MAX_CHARS` characters;
- is not noise: a version bump or release (:data:`NOISE_PREFIXES`, a bare version
  string), typo/WIP/merge/revert (:data:`NOISE_WORDS`), a bot author
  (:data:`BOT_MARKERS`), an "update readme"-style subject (:data:`TRIVIAL_SUBJECTS`), or a
  bare issue number;
- does not carry a conventional type that changes no behaviour
  (:data:`NO_BEHAVIOUR_TYPES`: docs, chore, ci, style, build).

The text kept as the task is the cleaned subject plus body: trailers (Signed-off-by,
Co-authored-by, ...), URLs, SHAs and issue references are stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GOOD_VERBS: frozenset[str] = frozenset(
    """add adjust allow append apply avoid build bump cache catch change check clarify clean
    clear close combine convert correct create decouple default define delete deprecate
    detect disable drop enable enforce ensure expand expose extend extract fix forbid format
    generalize guard handle hide ignore implement improve include increase inline introduce
    keep limit load log make mark merge move normalize optimize override parse pass permit
    preserve prevent print propagate raise read reduce refactor reject remove rename reorder
    replace report require reset resolve restore restrict return reuse revert rewrite run
    save separate set show simplify skip sort speed split stop store strip support switch
    teach test throw tidy track treat trim tweak unify update upgrade use validate verify
    warn wrap write accept account align calculate compute count document emit export give
    import install let measure pack prove record register retry route serve share start tolerate
    wait adapt address assume be bring call complete consider consolidate continue copy
    copyedit cover cull deal declare describe disallow do elaborate eliminate enhance exclude
    explain factor fail find finish force generate get go harden harmonize hug indicate infer
    invert isolate kill leave link lower mention migrate modernize modify note omit open opt
    order pin polish port prefer protect provide pull put quote re-add re-enable re-implement
    recommend reenable refine reflow refresh reformat regenerate reimplement relax reorganize
    rephrase respect review reword shorten silence specify standardize stay streamline stress
    suggest suppress tell tighten try tune turn undo unpin wordsmith work""".split()
)
"""Imperative verbs a subject may start with (lower case; matched as `verb + " "`)."""

NEGATIONS: tuple[str, ...] = ("don't", "don\u2019t", "dont", "do not", "never")
"""Starts (lower case, followed by a space) of negative imperatives: "Don't crash on ..."."""

CONVENTIONAL_TYPES: frozenset[str] = frozenset(
    "build chore ci docs feat fix perf refactor revert style test".split()
)
"""Conventional-commit types (matched case-insensitively, as the specification asks)."""

NO_BEHAVIOUR_TYPES: frozenset[str] = frozenset({"build", "chore", "ci", "docs", "style"})
"""Conventional types whose commits change no code behaviour: never a task."""

MAX_PREFIXES = 3
"""At most this many leading type/component prefixes come off a subject."""

PREFIX_RE = re.compile(
    r"^(?P<name>[^\s:()\[\]!]{1,30})(?:\((?P<scope>[^)]*)\))?(?P<breaking>!)?\s?:\s+(?=\S)"
)
"""A leading `type(scope)!: ` or `component: `: a short token without spaces, a colon and
a space (so `http://x` and `Note that: ...` are left alone)."""
TAG_RE = re.compile(r"^\[[^\]]*\]\s*")

NOISE_WORDS: tuple[str, ...] = ("typo", "wip", "work in progress", "merge", "revert")
"""Whole words that mark a subject as noise wherever they appear."""

NOISE_PREFIXES: tuple[str, ...] = (
    "bump",
    "release",
    "prepare release",
    "prepare version",
    "set version",
    "update version",
    "version",
    "changelog",
    "update changelog",
)
"""Subject starts (lower case) of release chores."""

TRIVIAL_SUBJECTS: tuple[str, ...] = (
    r"update(d)? (the )?(readme|changelog|gitignore|docs?|license|authors|contributors)(\.\w+)?",
    r"update(d)? (dependency|dependencies|deps|requirements|submodules?)\b.*",
    r"(add|update|fix) (readme|changelog)(\.\w+)?",
    r"update",
    r"initial commit",
)
"""Regular expressions (full match, lower case) of subjects that describe no code task."""

BOT_MARKERS: tuple[str, ...] = ("[bot]", "dependabot", "renovate", "pre-commit-ci")
"""Author name or email substrings of bots."""

MIN_WORDS, MAX_WORDS = 3, 30
MIN_CHARS, MAX_CHARS = 12, 200

VERSION_RE = re.compile(r"\bv?\d+\.\d+(\.\d+)?\b")
ISSUE_ONLY_RE = re.compile(r"^\W*(#|gh-)?\d+\W*$", re.IGNORECASE)
TRAILER_RE = re.compile(
    r"^(signed-off-by|co-authored-by|reviewed-by|reviewed-on|acked-by|tested-by|"
    r"reported-by|suggested-by|change-id|cc|fixes|closes|resolves|refs?|see|bug|"
    r"piperorigin-revid|differential revision|git-svn-id)\s*:.*$",
    re.IGNORECASE | re.MULTILINE,
)
URL_RE = re.compile(r"https?://\S+")
SHA_RE = re.compile(r"\b[0-9a-f]{7,40}\b")
ISSUE_REF_RE = re.compile(r"(\(\s*)?(\b(gh-|[A-Z][A-Z0-9]+-)\d+\b|#\d+\b)(\s*\))?")
CHERRY_RE = re.compile(r"\(cherry picked from commit [0-9a-f]+\)", re.IGNORECASE)


@dataclass(frozen=True)
class MessageVerdict:
    """Whether a subject qualifies as a task, a score in [0, 1], why not, and the
    subject's conventional-commit type (None when it has none)."""

    ok: bool
    score: float
    reason: str | None
    conventional_type: str | None = None


@dataclass(frozen=True)
class ParsedSubject:
    """A cleaned subject split into its conventional type (lower case, or None), the
    component prefixes that came off it, and the description that remains."""

    conventional_type: str | None
    components: tuple[str, ...]
    text: str


def _clean_line(text: str) -> str:
    text = CHERRY_RE.sub("", text)
    text = URL_RE.sub("", text)
    text = ISSUE_REF_RE.sub("", text)
    text = SHA_RE.sub("", text)
    text = re.sub(r"^\s*\[[^\]]*\]\s*", "", text)  # a leading [tag]
    text = re.sub(r"\s*\[(skip ci|ci skip)\]", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+([.,;:!?)])", r"\1", " ".join(text.split()))
    return text.strip(" :;,-")


def clean_task_text(message: str) -> str:
    """The message as a task: subject and body without trailers, URLs, SHAs, issue refs."""
    body = TRAILER_RE.sub("", message)
    lines = [_clean_line(line) for line in body.splitlines()]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip()


def parse_subject(subject: str) -> ParsedSubject:
    """Clean `subject` and take its leading conventional type and component prefixes off.

    `feat(parser)!: add x` has type `feat` and text `add x`; `aiohttp: use x` has the
    component `aiohttp` and no type; `[core] fix: x` has type `fix`. The first prefix whose
    name is one of :data:`CONVENTIONAL_TYPES` is the type; the others are components.
    """
    text = _clean_line(subject.strip())
    kind: str | None = None
    components: list[str] = []
    for _ in range(MAX_PREFIXES):
        tag = TAG_RE.match(text)
        if tag:
            components.append(tag.group(0).strip()[1:-1])
            text = text[tag.end() :]
            continue
        match = PREFIX_RE.match(text)
        if not match:
            break
        name = match.group("name").lower()
        if kind is None and name in CONVENTIONAL_TYPES:
            kind = name
        else:
            components.append(match.group("name"))
        text = text[match.end() :]
    return ParsedSubject(kind, tuple(components), text.strip())


def conventional_type(subject: str) -> str | None:
    """The conventional-commit type of `subject` (`feat`, `fix`, `docs`, ...) or None."""
    return parse_subject(subject).conventional_type


def _is_imperative(lower: str) -> bool:
    return lower.split(" ", 1)[0] in GOOD_VERBS or any(
        lower.startswith(negation + " ") for negation in NEGATIONS
    )


def score_subject(subject: str, *, author: str = "") -> MessageVerdict:
    """Judge a commit subject (first line) as a task description."""
    raw = subject.strip()
    parsed = parse_subject(raw)
    kind = parsed.conventional_type

    def drop(score: float, reason: str) -> MessageVerdict:
        return MessageVerdict(False, score, reason, kind)

    if any(marker in author.lower() for marker in BOT_MARKERS):
        return drop(0.0, "bot author")
    if not raw:
        return drop(0.0, "empty subject")
    if ISSUE_ONLY_RE.match(raw):
        return drop(0.0, "bare issue number")
    lower = raw.lower()
    for word in NOISE_WORDS:
        if re.search(rf"\b{re.escape(word)}\b", lower):
            return drop(0.0, f"noise: {word}")
    text = parsed.text
    stripped = text.lower()
    for prefix in NOISE_PREFIXES:
        for candidate in (lower, stripped):
            if candidate == prefix or candidate.startswith(prefix + " "):
                return drop(0.0, f"noise: {prefix}")
    if VERSION_RE.fullmatch(stripped.strip()):
        return drop(0.0, "noise: version string")
    for pattern in TRIVIAL_SUBJECTS:
        if re.fullmatch(pattern, stripped):
            return drop(0.0, "trivial subject")
    words = text.split()
    if not words or not _is_imperative(" ".join(words).lower()):
        first = words[0] if words else ""
        return drop(0.1, f"not imperative: starts with {first!r}")
    if len(words) < MIN_WORDS:
        return drop(0.2, f"too short: {len(words)} words < {MIN_WORDS}")
    if len(words) > MAX_WORDS:
        return drop(0.2, f"too long: {len(words)} words > {MAX_WORDS}")
    if not MIN_CHARS <= len(text) <= MAX_CHARS:
        return drop(0.2, f"length {len(text)} outside {MIN_CHARS}..{MAX_CHARS}")
    if kind in NO_BEHAVIOUR_TYPES:
        return drop(0.0, f"conventional type {kind}: changes no behaviour")
    # More descriptive subjects score higher, saturating at 10 words.
    score = 0.6 + 0.4 * min(len(words), 10) / 10
    return MessageVerdict(True, round(score, 3), None, kind)
