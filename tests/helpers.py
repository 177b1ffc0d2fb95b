"""Helpers shared between tests and `conftest.py`: the home guard's pieces and the vLLM
helpers. Tests import them from here, never from `conftest.py` or another test module."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

if TYPE_CHECKING:
    from cra.workspace import Workspace

# The home directory the tests were started with, taken before conftest.py points HOME at
# a temporary one (conftest.py imports this module first).
REAL_HOME = Path(os.path.expanduser("~")).resolve()
# Where tools write when they think HOME is theirs; a change here means a leak.
WATCHED = (".cache", ".config", ".local", ".cra", ".gitconfig", ".huggingface", ".triton")

# Every variable that names a cache or a per-user folder of a library the tests use, with
# its place under a home. huggingface_hub and datasets read theirs once, at import.
CACHE_VARS = {
    "XDG_CACHE_HOME": ".cache",
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "HF_HOME": ".cache/huggingface",
    "HF_HUB_CACHE": ".cache/huggingface/hub",
    "HUGGINGFACE_HUB_CACHE": ".cache/huggingface/hub",
    "HF_XET_CACHE": ".cache/huggingface/xet",
    "HF_ASSETS_CACHE": ".cache/huggingface/assets",
    "HF_MODULES_CACHE": ".cache/huggingface/modules",
    "HF_DATASETS_CACHE": ".cache/huggingface/datasets",
    "TRANSFORMERS_CACHE": ".cache/huggingface/hub",
    "TORCH_HOME": ".cache/torch",
    "TORCHINDUCTOR_CACHE_DIR": ".cache/torchinductor",
    "TRITON_CACHE_DIR": ".cache/triton",
    "VLLM_CACHE_ROOT": ".cache/vllm",
    "UV_CACHE_DIR": ".cache/uv",
    "PIP_CACHE_DIR": ".cache/pip",
}
# No test reaches a model hub.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def home_env(home: Path) -> dict[str, str]:
    """HOME, every cache variable and the offline switches, all pointing into `home`."""
    return {"HOME": str(home), **{k: str(home / v) for k, v in CACHE_VARS.items()}, **OFFLINE}


def home_snapshot(home: Path) -> dict[str, float]:
    """mtime of each watched entry of `home` and of its direct children."""
    snap: dict[str, float] = {}
    for name in WATCHED:
        top = home / name
        if not top.exists():
            continue
        snap[name] = top.stat().st_mtime
        if top.is_dir():
            for child in top.iterdir():
                try:
                    snap[f"{name}/{child.name}"] = child.stat().st_mtime
                except FileNotFoundError:
                    continue
    return snap


def changed_entries(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """The watched entries that appeared, vanished or changed between two snapshots."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def wheel_of(folder: Path, project: str) -> str:
    """The file name of the one wheel of `project` in `folder`, whatever version of it the
    registry served when the environment the wheelhouse comes from was installed."""
    found = [
        p.name
        for p in folder.glob("*.whl")
        if parse_wheel_filename(p.name)[0] == canonicalize_name(project)
    ]
    if len(found) != 1:
        raise LookupError(f"{folder} holds {len(found)} wheels of {project}: {found}")
    return found[0]


def wheel_pins(folder: Path) -> list[str]:
    """`name==version` of every wheel in `folder`, sorted by name: what a resolver limited
    to it pins when each project there is needed."""
    found = sorted(parse_wheel_filename(p.name)[:2] for p in folder.glob("*.whl"))
    return [f"{name}=={version}" for name, version in found]


REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_VLLM_VENV = REPO_ROOT / ".venv-vllm"


def vllm_python() -> Path | None:
    """The interpreter that has vLLM: `$CRA_VLLM_PYTHON`, else `.venv-vllm/` of the
    repository (what `scripts/install-vllm.sh` and `make test` create)."""
    configured = os.environ.get("CRA_VLLM_PYTHON")
    candidate = Path(configured) if configured else REAL_VLLM_VENV / "bin" / "python"
    return candidate if candidate.exists() else None


def run_cra(workspace: Workspace, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`cra -w WORKSPACE ARGS...` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cra", "-w", str(workspace.root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def served_config(base: Path, *, drain_s: float, max_loras: int = 0) -> str:
    """The `cra.toml` of a workspace that serves `base` with the real vLLM on a free port
    (float32, short contexts); skips the test where vLLM is not installed."""
    from cra.serving.process import free_port

    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: run scripts/install-vllm.sh (make test does)")
    return (
        f'[model]\nbase = "{base}"\n'
        f'[serve]\npython = "{python}"\nport = {free_port()}\nmax_model_len = 1024\n'
        f'drain_s = {drain_s}\nmax_loras = {max_loras}\nextra_args = ["--dtype", "float32"]\n'
    )


@contextmanager
def detached_server(workspace: Workspace) -> Iterator[Workspace]:
    """`cra serve --detach` on `workspace` for the block, `cra serve stop` after it."""
    started = run_cra(workspace, "serve", "--detach")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield workspace
    finally:
        run_cra(workspace, "serve", "stop")


def signer_of(package_root: Path) -> str:
    """The public key that signed the package at `package_root` (from its manifest.sig)."""
    import json

    from cra.repos.signing import SIGNATURE_NAME

    return json.loads((package_root / SIGNATURE_NAME).read_text(encoding="utf-8"))["key"]


def trust_key(workspace_root: Path, public_key: str) -> None:
    """List `public_key` in the workspace's [repos] trusted_keys, as a user pastes the
    packing machine's `cra repo key` into cra.toml."""
    path = workspace_root / "cra.toml"
    text = path.read_text(encoding="utf-8")
    if "trusted_keys = []" not in text:
        raise ValueError(f"{path} has no empty trusted_keys to fill")
    path.write_text(text.replace("trusted_keys = []", f'trusted_keys = ["{public_key}"]'))


CRA_MENTION = r"(?<![\w./$-])cra((?:\s+[a-z][a-z0-9-]*)+)"
"""A `cra ...` mention in README text: `cra` then the words that may name a command."""


def readme_code(text: str) -> list[str]:
    """The code of a Markdown text: each line of its fenced blocks and each inline code
    span outside them (a span's `\\|` is a table's escaped `|`)."""
    import re

    pieces: list[str] = []
    prose: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            pieces.append(line)
        else:
            prose.append(line)
    spans = re.findall(r"`([^`]+)`", "\n".join(prose))
    return pieces + [span.replace("\\|", "|") for span in spans]


def readme_cli_problems(text: str, root: object) -> tuple[list[str], int]:
    """What README `text` says about the click command tree `root` that is false: a `cra
    ...` command that does not exist, an `--option` next to it the command lacks. Returns
    the problems and how many mentions were checked."""
    import re

    import click

    assert isinstance(root, click.Group)
    problems: list[str] = []
    checked = 0
    for piece in readme_code(text):
        starts = [m.start() for m in re.finditer(CRA_MENTION, piece)]
        for start, end in zip(starts, [*starts[1:], len(piece)][: len(starts)], strict=True):
            segment = piece[start:end]
            words = re.match(CRA_MENTION, segment)
            assert words is not None
            chain = _command_chain(root, words.group(1).split())
            command = chain[-1]
            name = " ".join(["cra", *(c.name or "" for c in chain[1:])])
            checked += 1
            unknown = len(chain) <= len(words.group(1).split()) and isinstance(command, click.Group)
            if command is root or unknown:
                problems.append(f"`{segment.strip()[:60]}`: no such command")
                continue
            known = {o for c in chain for p in c.params for o in (*p.opts, *p.secondary_opts)}
            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", segment):
                if option not in known | {"--help"}:
                    problems.append(f"`{name}` has no option {option}")
    return problems, checked


def _command_chain(root: object, words: list[str]) -> list:
    """The commands `words` walk down from `root`, as far as they name subcommands."""
    import click

    chain = [root]
    for word in words:
        group = chain[-1]
        if not isinstance(group, click.Group) or word not in group.commands:
            break
        chain.append(group.commands[word])
    return chain


def misplaced_comments(text: str) -> list[str]:
    """The keys of a `cra.toml` text whose line is not directly under the comment of its
    own setting's help (a section header under its section's help, where it has one)."""
    from cra.settings_table import SECTION_HELP, SETTINGS

    helps = {(s.section, s.key): s.help for s in SETTINGS}
    problems: list[str] = []
    section = ""
    comment: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        above, comment = " ".join(" ".join(comment).split()), []
        if line.startswith("["):
            section = line.strip("[]")
            wanted = SECTION_HELP.get(section)
        elif "=" in line:
            wanted = helps.get((section, line.split("=", 1)[0].strip()), "?")
        else:
            continue
        if wanted is not None and above != " ".join(wanted.replace("\n# ", " ").split()):
            problems.append(f"[{section}] {line.split('=', 1)[0].strip()}: under {above!r}")
    return problems


def model_workspace(workspace: Workspace, model_dir: Path) -> Workspace:
    """`workspace` with `model_dir` as its base model, no drain wait when serving, and
    the fixture dataset written; reopened."""
    from cra.fixtures.datasets import write_dataset
    from cra.workspace import open_workspace

    (workspace.root / "cra.toml").write_text(
        f'[model]\nbase = "{model_dir}"\n[serve]\ndrain_s = 0.0\n'
    )
    workspace = open_workspace(workspace.root)
    write_dataset(workspace)
    return workspace
