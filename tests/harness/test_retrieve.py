"""BM25 retrieval over a real index."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.harness.index import Indexer
from cra.harness.retrieve import retrieve, tokenize
from tests.harness.gitutil import Repo


def test_tokenize_splits_identifiers_and_drops_stopwords() -> None:
    """Tokens split identifiers on case and underscores, lose plurals and drop stopwords."""
    words = ["fix", "zero", "division", "error", "mean", "list"]
    assert tokenize("Fix ZeroDivisionError in mean_of_lists") == words


def test_the_relevant_definition_ranks_first(tmp_path: Path, workspace) -> None:
    """The matching definition ranks first; excluded files and stopword queries give no hits."""
    repo = Repo(tmp_path / "r")
    sha = repo.commit(
        {
            "src/stats.py": 'def mean(values):\n    """Arithmetic mean of values."""\n'
            "    return sum(values) / len(values)\n\n\ndef median(values):\n    return 0\n",
            "src/text.py": "def count_words(text):\n    return len(text.split())\n",
            "tests/test_stats.py": "def test_mean():\n    pass\n",
        },
        "Add",
    )
    index = Indexer(workspace.curated_db(), repo.path).index(sha)
    task = "Fix division by zero in mean of an empty list"
    hits = retrieve(index, task, k=5, exclude={"tests/test_stats.py"})
    assert hits[0].file == "src/stats.py"
    assert hits[0].symbol == "mean"
    assert all(h.file != "tests/test_stats.py" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert retrieve(index, "the of and", k=5) == []
    with pytest.raises(ValueError, match="k must be"):
        retrieve(index, "mean", k=0)
