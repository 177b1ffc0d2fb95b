"""Message scoring and cleaning."""

from __future__ import annotations

import pytest

from cra.harness.messages import clean_task_text, conventional_type, parse_subject, score_subject


@pytest.mark.parametrize(
    "subject",
    [
        "Fix ZeroDivisionError in mean of empty list",
        "Add median function to stats",
        "Rename utils module to helpers",
        "Refactor word splitting into a helper",
        "[core] Handle empty input in the parser (#123)",
        "Add café name normalisation",
    ],
)
def test_imperative_descriptive_subjects_qualify(subject: str) -> None:
    """Imperative, descriptive subjects qualify with a score above 0.6."""
    verdict = score_subject(subject)
    assert verdict.ok, verdict.reason
    assert 0.6 < verdict.score <= 1.0


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("Fixed crash on empty input", "not imperative"),
        ("fixing the crash on input", "not imperative"),
        ("Fixes the crash on input", "not imperative"),
        ("Fix typo in docstring of mean", "typo"),
        ("WIP streaming support", "wip"),
        ('Revert "Add median function"', "revert"),
        ("Merge branch 'feature/mode'", "merge"),
        ("Bump version to 0.2.0", "bump"),
        ("Release 1.4.0", "release"),
        ("v1.2.3", "version"),
        ("#42", "bare issue number"),
        ("Update README.md", "trivial"),
        ("Update dependencies", "trivial"),
        ("Fix it", "too short"),
        ("", "empty"),
    ],
)
def test_noise_is_dropped_with_a_reason(subject: str, reason: str) -> None:
    """Non-imperative, trivial, merge, revert, release and short subjects drop with a reason."""
    verdict = score_subject(subject)
    assert not verdict.ok
    assert reason in (verdict.reason or "")


def test_bot_authors_are_dropped() -> None:
    """Commits by bot authors are dropped as bot author."""
    verdict = score_subject("Update dependency pytest to v8", author="renovate[bot]")
    assert verdict.reason == "bot author"


def test_clean_task_text_strips_trailers_urls_shas_and_issue_refs() -> None:
    """Task text loses its trailers, URLs, commit shas and issue references."""
    message = (
        "Fix overflow in clamp (#481)\n\n"
        "See https://example.org/issues/481 for details; follows a1b2c3d4e5f.\n"
        "Also closes GH-12 and JIRA-99.\n\n"
        "Signed-off-by: Ada <ada@example.org>\n"
        "Co-authored-by: Alan <alan@example.org>\n"
    )
    assert clean_task_text(message) == (
        "Fix overflow in clamp\n\nSee for details; follows.\nAlso closes and."
    )


# (subject, its conventional type, the task text left once the prefixes go)
SUBJECTS = [
    ("feat: add a median function to stats", "feat", "add a median function to stats"),
    ("fix(parser): handle empty input in tokens", "fix", "handle empty input in tokens"),
    ("feat!: drop the legacy config loader", "feat", "drop the legacy config loader"),
    ("Fix(api)!: reject negative timeouts early", "fix", "reject negative timeouts early"),
    ("perf : cache the grammar per version", "perf", "cache the grammar per version"),
    ("[core] fix: handle None in the loader", "fix", "handle None in the loader"),
    ("aiohttp: use the shared session", None, "use the shared session"),
    ("tests/foo: add a case for empty input", None, "add a case for empty input"),
    ("blackd: fix: return 400 on a bad header", "fix", "return 400 on a bad header"),
    ("Add feat: a later colon stays", None, "Add feat: a later colon stays"),
    ("Diff parser: add error dedents", None, "Diff parser: add error dedents"),
    ("See http://example.org for the fix", None, "See for the fix"),
]


@pytest.mark.parametrize(("subject", "kind", "text"), SUBJECTS)
def test_parse_subject_takes_off_the_type_and_component_prefixes(
    subject: str, kind: str | None, text: str
) -> None:
    """A leading `type(scope)!: ` gives the type; short `token: ` prefixes and [tags] go."""
    parsed = parse_subject(subject)
    assert (parsed.conventional_type, parsed.text) == (kind, text)
    assert conventional_type(subject) == kind


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("feat: add a median function to stats", "feat"),
        ("fix(parser): handle empty input in tokens", "fix"),
        ("refactor!: split the loader into two steps", "refactor"),
        ("aiohttp: use the shared session for requests", None),
        ("tests/foo: add a case for empty input", None),
        ("[component] Fix the crash on empty input", None),
    ],
)
def test_prefixed_imperative_subjects_qualify_and_keep_their_type(
    subject: str, kind: str | None
) -> None:
    """Once the prefix is off, an imperative subject qualifies; the verdict keeps the type."""
    verdict = score_subject(subject)
    assert verdict.ok, verdict.reason
    assert verdict.conventional_type == kind


@pytest.mark.parametrize("kind", ["docs", "chore", "ci", "style", "build"])
def test_types_that_change_no_behaviour_are_dropped_with_their_own_reason(kind: str) -> None:
    """A good imperative subject of a docs/chore/ci/style/build type is still no task."""
    verdict = score_subject(f"{kind}(setup): add a section on the plugin api")
    assert not verdict.ok
    assert verdict.reason == f"conventional type {kind}: changes no behaviour"
    assert verdict.conventional_type == kind


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("chore: bump version to 2.0.1", "noise: bump"),
        ("chore(release): 1.2.3", "noise: version string"),
        ("docs: update readme", "trivial subject"),
        ("fix: fixed the crash on empty input", "not imperative: starts with 'fixed'"),
        ("fix: handle None", "too short: 2 words < 3"),
    ],
)
def test_the_rest_of_the_message_checks_apply_after_the_prefix(subject: str, reason: str) -> None:
    """Noise, tense and length are judged on the subject without its prefix."""
    verdict = score_subject(subject)
    assert not verdict.ok
    assert verdict.reason == reason


@pytest.mark.parametrize(
    "subject",
    [
        "Don't crash on an empty input file",
        "don\u2019t strip the trailing comma in one-tuples",
        "Do not copy __weakref__ from the class dict",
        "Never raise on a missing optional key",
    ],
)
def test_negative_imperatives_are_imperative(subject: str) -> None:
    """Negative imperatives ("Don't", "Do not", "Never") tell the code what to do."""
    assert score_subject(subject).ok, score_subject(subject).reason


@pytest.mark.parametrize(
    "subject",
    [
        "Get escaping issues working in all versions",
        "Make the loader lazy on first access",
        "Pin the linter to the last good release",
        "Explain automatic parentheses management better",
        "Exclude generated files from the coverage report",
        "Try the fast path before the slow one",
        "Be stricter about error codes",
    ],
)
def test_common_imperative_verbs_qualify(subject: str) -> None:
    """Real imperative verbs from real histories start a qualifying subject."""
    assert score_subject(subject).ok, score_subject(subject).reason


@pytest.mark.parametrize(
    "subject", ["Prepare 19.1.0 release notes", "More tests for the loader", "Better error msgs"]
)
def test_release_chores_and_non_verbs_stay_out(subject: str) -> None:
    """Release chores ("Prepare ...") and non-verbs ("More", "Better") are not imperative."""
    assert score_subject(subject).reason.startswith("not imperative")
