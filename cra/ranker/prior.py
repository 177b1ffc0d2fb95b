"""The recency prior, the ranker's third signal: a file the repository's recent commits
changed is likelier to change again. Each earlier commit adds `0.5 ** (age / half_life)`
to every file it changed, its age counted in commits (the newest earlier commit has age
0), so recent work outweighs old history."""

from __future__ import annotations

from collections.abc import Sequence

HALF_LIVES = (3.0, 10.0, 30.0, 100.0)
"""Half-lives (in commits) training chooses from on its validation rows."""


def recency(changes: Sequence[Sequence[str]], half_life: float) -> dict[str, float]:
    """Each file's recency score from `changes`: the files each earlier commit changed,
    oldest first."""
    scores: dict[str, float] = {}
    newest = len(changes) - 1
    for age_from_start, files in enumerate(changes):
        weight = 0.5 ** ((newest - age_from_start) / half_life)
        for path in files:
            scores[path] = scores.get(path, 0.0) + weight
    return scores
