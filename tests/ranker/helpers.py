"""Helpers of the ranker tests: a workspace whose [ranker] base is the tiny encoder."""

from __future__ import annotations

from pathlib import Path

from cra.workspace import Workspace, init_workspace, open_workspace


def ranker_workspace(root: Path, base: Path, extra: str = "") -> Workspace:
    """A fresh workspace training the ranker from `base` with small, fast settings."""
    init_workspace(root)
    (root / "cra.toml").write_text(
        f'[ranker]\nbase = "{base}"\nepochs = 8\nbatch_size = 8\nlearning_rate = 0.001\n{extra}'
    )
    return open_workspace(root)
