"""Library probe messages a user cannot act on stay off stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bitsandbytes", reason="the train extra is not installed")

SCRIPT = """
import logging
from cra.ranker.base import go_offline
go_offline()
import bitsandbytes
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("kernels-community probe")
logging.getLogger("bitsandbytes.backends.cpu.ops").error("a real error")
"""


def test_the_offline_ranker_process_hides_the_hub_kernel_probe_not_errors() -> None:
    """After go_offline, importing bitsandbytes prints no warning about hub kernels (it
    does on CPUs with AVX512-BF16), while its errors still show."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "kernels-community" not in result.stderr
    assert "a real error" in result.stderr


ENCODER_SCRIPT = """
import sys
from pathlib import Path
from cra.ranker.base import load_encoder
folder = Path(sys.argv[1])
load_encoder(folder / "tiny").save(str(folder / "saved"))
"""


def test_loading_and_saving_an_encoder_draws_no_library_progress_bars(tmp_path: Path) -> None:
    """The ranker's encoder loads and saves without transformers' "Loading weights" and
    "Writing model shards" bars on stderr (cra reports its own progress)."""
    pytest.importorskip("sentence_transformers", reason="the ranker extra is not installed")
    from cra.fixtures.ranker import build_tiny_encoder

    build_tiny_encoder(tmp_path / "tiny")
    result = subprocess.run(
        [sys.executable, "-c", ENCODER_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "saved").is_dir()
    assert "Loading weights" not in result.stderr
    assert "Writing model shards" not in result.stderr
