"""Helpers of the harness tests: SWE-bench files read with the swebench package's own
loader, and their patches applied as SWE-bench applies them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cra.workspace import Workspace


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


def marked_env(envs_dir: Path, key: str, package: str) -> Path:
    """An environment folder under `envs_dir` whose marker names `package`: what removal
    goes by (not a working environment)."""
    from cra.env.build import MARKER

    folder = envs_dir / key
    (folder / "bin").mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"key": key, "package": package}) + "\n")
    return folder


def register_repo_dataset(workspace: Workspace, dataset_id: str, repo: str, rows: int) -> None:
    """A registered dataset (through the dataset store) of `rows` train rows and one eval
    row of tasks of `repo`."""
    from contextlib import closing

    from cra.datasets_store import put_planless_dataset
    from cra.db import transaction
    from cra.fsutil import sha256_file

    folder = workspace.datasets_dir / dataset_id
    folder.mkdir(parents=True)
    for split, n in (("train", rows), ("eval", 1)):
        lines = [
            json.dumps({"prompt": [], "completion": [], "meta": {"repo": repo, "task_id": f"t{i}"}})
            for i in range(n)
        ]
        (folder / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    hashes = {f.name: sha256_file(f) for f in folder.iterdir()}
    with closing(workspace.raw_db()) as conn, transaction(conn):
        put_planless_dataset(
            conn,
            dataset_id,
            path=str(folder.relative_to(workspace.root)),
            counts={"train": rows, "eval": 1},
            sha256=hashes,
            created_at="2025-01-01T00:00:00+00:00",
        )
