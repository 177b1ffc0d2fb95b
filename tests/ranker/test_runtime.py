"""The ranker's ONNX Runtime path: a saved version carries `encoder.onnx`, loading it
serves queries through ONNX Runtime with the torch encoder's numbers, and a version
without the export (or a layout that is not exported) keeps torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cra.ranker.base import load_encoder
from cra.ranker.history import Candidate
from cra.ranker.model import ENCODER_DIR, Ranker, load_ranker
from cra.ranker.runtime import ONNX_FILE, OnnxEncoder, export_encoder
from cra.ranker.train import RankerTrainOptions, train_ranker
from tests.ranker.helpers import ranker_workspace

pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")
pytest.importorskip("onnxruntime", reason="the ranker extra is not installed")

TEXTS = [
    "Fix the colour handling",
    "  pkg/alpha.py (pkg alpha)\ndef render(value)\nclass Painter  ",
    "a much longer text about computing totals " * 20,
    "",
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random encoder, built once."""
    from cra.fixtures.ranker import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny")


def test_the_export_computes_what_the_torch_encoder_computes(encoder: Path, tmp_path: Path) -> None:
    """Batches of texts of different lengths (padded, stripped, cut at max_seq_length)
    embed to the torch encoder's vectors."""
    model = load_encoder(encoder, max_seq_length=32)
    path = export_encoder(model, tmp_path)
    assert path == tmp_path / ONNX_FILE and path.is_file()
    fast = OnnxEncoder.load(path, model.tokenizer, model.max_seq_length, normalise=True)
    got = fast.encode(TEXTS, batch_size=3)
    want = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.allclose(got, want, atol=1e-5)


def test_a_layout_that_is_not_mean_pooling_is_not_exported(encoder: Path, tmp_path: Path) -> None:
    """An encoder pooling its CLS token keeps torch: nothing is written."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    model = load_encoder(encoder)
    cls = SentenceTransformer(modules=[model[0], Pooling(64, "cls")], device="cpu")
    assert export_encoder(cls, tmp_path) is None
    assert not (tmp_path / ONNX_FILE).exists()


def test_a_trained_version_serves_through_onnx_runtime_and_falls_back_to_torch(
    encoder: Path, tmp_path: Path
) -> None:
    """The registered version holds encoder.onnx (with its sha256); loaded, it reranks
    through ONNX Runtime in the torch ranker's order; a copy without the export loads the
    sentence-transformers model and ranks the same."""
    from cra.fixtures.ranker import build_ranker_history

    workspace = ranker_workspace(tmp_path / "ws", encoder)
    build_ranker_history(workspace, commits=40)
    version = train_ranker(workspace, RankerTrainOptions()).version
    assert ONNX_FILE in version.files_sha256
    fast = load_ranker(version.path)
    assert isinstance(fast.encoder, OnnxEncoder)
    plain = tmp_path / "plain"
    shutil.copytree(version.path, plain)
    (plain / ONNX_FILE).unlink()
    slow = load_ranker(plain)
    assert not isinstance(slow.encoder, OnnxEncoder)
    cands = [
        Candidate(f"pkg/m{i}.py", "", f"pkg/m{i}.py (pkg m{i})\n{TEXTS[i % 3]}", float(i))
        for i in range(6)
    ]
    query = "Fix the colour handling of totals"
    assert _order(fast, query, cands) == _order(slow, query, cands)
    assert (plain / ENCODER_DIR / "modules.json").is_file()


def _order(ranker: Ranker, query: str, cands: list[Candidate]) -> list[tuple[str, float]]:
    return [(s.path, round(s.score, 4)) for s in ranker.rerank(query, cands)]
