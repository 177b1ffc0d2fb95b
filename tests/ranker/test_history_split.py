"""The per-repository holdout of ranker rows: tasks held out by time, untested rows train."""

from __future__ import annotations

from cra.ranker.history import holdout_split
from cra.ranker_rows import RankerRow


def _row(repo: str, n: int, kind: str) -> RankerRow:
    """A row of `repo` authored on day `n`."""
    return RankerRow(
        task_id=f"{repo}-{n}",
        repo=repo,
        query=f"change {n}",
        positives=("pkg/a.py",),
        negatives=(),
        parent_sha="p" * 40,
        authored_at=f"2024-01-{n:02d}T00:00:00+00:00",
        kind=kind,
    )


def test_the_newest_tested_rows_of_each_repository_are_held_out() -> None:
    """Each repository's newest 20% of tested rows is the holdout; only rows older than
    its first held-out row train, untested ones included."""
    rows = [_row("a", n, "tested") for n in range(1, 11)]
    rows += [_row("a", n, "untested") for n in (3, 10)]
    rows += [_row("b", n, "tested") for n in range(1, 6)]
    train, held = holdout_split(rows, 0.2)
    assert [r.task_id for r in held] == ["b-5", "a-9", "a-10"]
    assert "a-3" in {r.task_id for r in train if r.kind == "untested"}
    assert not {r.task_id for r in train} & {"a-9", "a-10", "b-5"}
    assert len(train) == 8 + 1 + 4
