"""Message scoring and cleaning."""

from __future__ import annotations

import pytest

from cra.harness.messages import clean_task_text, score_subject


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
    verdict = score_subject(subject)
    assert not verdict.ok
    assert reason in (verdict.reason or "")


def test_bot_authors_are_dropped() -> None:
    verdict = score_subject("Update dependency pytest to v8", author="renovate[bot]")
    assert verdict.reason == "bot author"


def test_clean_task_text_strips_trailers_urls_shas_and_issue_refs() -> None:
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
