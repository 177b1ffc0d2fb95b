"""Library probe messages a user cannot act on stay off stderr."""

from __future__ import annotations

import subprocess
import sys

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
