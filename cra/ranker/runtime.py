"""The encoder at inference time through ONNX Runtime: the same transformer, exported once
when a version is saved, runs a query in well under half the time eager torch needs on
these CPUs (`benchmarks/bench_scope_ranker.py --latency-only`), with the same numbers
(checked at export: the two must agree on a probe to a cosine of 0.99999).

A version folder may hold `encoder.onnx` next to `encoder/`; without it, or without
onnxruntime installed, the ranker runs the sentence-transformers model itself. Only the
plain layout is exported: a transformer, mean pooling, optionally normalisation (what
`cra.ranker.base` loads); any other layout keeps torch.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ONNX_FILE = "encoder.onnx"
PROBE = "Fix the parser when a decorator follows a comment; see the tests in test_parser.py"
AGREEMENT = 0.99999
OPSET = 17


def onnx_available() -> bool:
    """Whether this environment can export (onnx) and run (onnxruntime) an encoder."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _plain_layout(model: Any) -> bool:
    names = [type(m).__name__ for m in model]
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        return False
    return getattr(model[1], "pooling_mode", None) == "mean"


def _input_names(model: Any) -> list[str]:
    wanted = ("input_ids", "attention_mask", "token_type_ids")
    return [n for n in wanted if n in model.tokenizer.model_input_names]


def _export(model: Any, path: Path) -> None:
    import torch

    names = _input_names(model)
    inner = model[0].auto_model.eval()

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, tensors, strict=True))).last_hidden_state

    probe = model.tokenizer([PROBE], return_tensors="pt")
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(),
            tuple(probe[n] for n in names),
            str(path),
            input_names=names,
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def export_encoder(model: Any, folder: Path) -> Path | None:
    """Write `folder/encoder.onnx` from the sentence-transformers `model` and return its
    path; None (nothing written) when onnx is not installed, the layout is not the plain
    one, or the exported graph does not agree with torch on the probe."""
    if not onnx_available() or not _plain_layout(model):
        return None
    path = folder / ONNX_FILE
    _export(model, path)
    exported = OnnxEncoder.load(path, model.tokenizer, model.max_seq_length, _normalises(model))
    expected = model.encode([PROBE], convert_to_numpy=True, normalize_embeddings=True)
    got = exported.encode([PROBE], normalize_embeddings=True)
    if float((np.asarray(expected) * got).sum()) < AGREEMENT:
        path.unlink()
        return None
    return path


def _normalises(model: Any) -> bool:
    return type(model[-1]).__name__ == "Normalize"


@dataclass
class OnnxEncoder:
    """The `encode` of a sentence-transformers model, run by an ONNX Runtime session:
    tokenise (stripped, cut at `max_seq_length`), the transformer, mean pooling over the
    attention mask, then unit length where the model normalises or the caller asks."""

    session: Any
    tokenizer: Any
    max_seq_length: int
    normalise: bool
    names: tuple[str, ...]

    @classmethod
    def load(cls, path: Path, tokenizer: Any, max_seq_length: int, normalise: bool) -> OnnxEncoder:
        """A session on the exported graph at `path`."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # no busy-waiting threads after a call: they would take the CPU from the harness
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        names = tuple(i.name for i in session.get_inputs())
        return cls(session, tokenizer, max_seq_length, normalise, names)

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        feed = self.tokenizer(
            [t.strip() for t in texts],
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="np",
        )
        inputs = {n: np.asarray(feed[n], dtype=np.int64) for n in self.names}
        hidden = self.session.run(None, inputs)[0]
        mask = inputs["attention_mask"][..., None].astype(hidden.dtype)
        return (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        normalize_embeddings: bool = False,
        **_: Any,
    ) -> np.ndarray:
        """One embedding row per text (sentence-transformers' `encode` keywords accepted;
        the result is always a float32 numpy array)."""
        rows = [self._batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        out = np.concatenate(rows).astype(np.float32)
        if self.normalise or normalize_embeddings:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


def onnx_encoder(model: Any, folder: Path) -> OnnxEncoder | None:
    """The ONNX Runtime encoder of the version in `folder` for its loaded torch `model`
    (whose tokenizer it shares); None when the folder has no export or onnxruntime is
    not installed."""
    path = folder / ONNX_FILE
    if not path.is_file() or importlib.util.find_spec("onnxruntime") is None:
        return None
    return OnnxEncoder.load(path, model.tokenizer, model.max_seq_length, _normalises(model))
