"""Helpers of the harness tests: SWE-bench files read with the swebench package's own
loader, and their patches applied as SWE-bench applies them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def load_instances(path: Path) -> list[dict[str, object]]:
    """The instances of a local JSON lines file, read by swebench's dataset loader."""
    from swebench.harness.utils import load_swebench_dataset

    return [dict(i) for i in load_swebench_dataset(str(path))]


def apply_at_base(repo: Path, instance: dict[str, object], dest: Path) -> None:
    """Clone `repo` into `dest`, check out the instance's base commit and `git apply` its
    `patch`, then its `test_patch` (CalledProcessError when one does not apply)."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo), str(dest)], check=True)
    subprocess.run(
        ["git", "-C", str(dest), "checkout", "-q", str(instance["base_commit"])], check=True
    )
    for key in ("patch", "test_patch"):
        subprocess.run(
            ["git", "-C", str(dest), "apply", "-"], input=str(instance[key]), text=True, check=True
        )


def write_lines(path: Path, rows: list[object]) -> Path:
    """Write `rows` as JSON lines (a `str` row as it is) to `path`; return `path`."""
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path
