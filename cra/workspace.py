"""Workspaces: where a command's data lives, and how `cra init` creates one.

Resolution order: an explicit `--workspace`, then `$CRA_HOME`, then the nearest parent
of the current directory holding `cra.toml`, then the current directory.

The workspace sits one floor above `cra.db`: it knows where the databases live and opens
them with the workspace's settings; `cra.db` never imports the workspace.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cra.config import CONFIG_NAME, Config, default_config_text, load_config
from cra.db import open_curated, open_raw
from cra.errors import WorkspaceError

FOLDERS: tuple[str, ...] = ("repos", "db", "harness", "planning", "training", "adapters")

ENV_VAR = "CRA_HOME"


def resolve_root(
    explicit: Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """Return the workspace directory the resolution order picks (it may not exist yet)."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return Path(explicit).expanduser().absolute()
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser().absolute()
    here = (cwd or Path.cwd()).absolute()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    return here


@dataclass(frozen=True)
class Workspace:
    """An initialised workspace: its root, its settings, and where each kind of data goes."""

    root: Path
    config: Config

    @property
    def repos_dir(self) -> Path:
        """Repo packages: `repos/NAME/{repo/, packages/, manifest.json}`."""
        return self.root / "repos"

    @property
    def db_dir(self) -> Path:
        """The SQLite databases."""
        return self.root / "db"

    @property
    def harness_dir(self) -> Path:
        """Scratch space of the harness: environments, worktrees, logs, server state."""
        return self.root / "harness"

    @property
    def verified_dir(self) -> Path:
        """The stamps of packages that passed `cra repo verify` as they are now."""
        return self.harness_dir / "verified"

    @property
    def datasets_dir(self) -> Path:
        """`training/datasets/`: every curated dataset."""
        return self.training_dir / "datasets"

    @property
    def serve_state_path(self) -> Path:
        """The running server's state (`harness/serve/state.json`)."""
        return self.harness_dir / "serve" / "state.json"

    @property
    def planning_dir(self) -> Path:
        """Training plans."""
        return self.root / "planning"

    @property
    def training_dir(self) -> Path:
        """Datasets and training runs."""
        return self.root / "training"

    @property
    def adapters_dir(self) -> Path:
        """Every adapter version: `adapters/NAME/vN/`."""
        return self.root / "adapters"

    @property
    def raw_db_path(self) -> Path:
        """`db/raw.db`: everything that happened."""
        return self.db_dir / "raw.db"

    @property
    def curated_db_path(self) -> Path:
        """`db/curated.db`: the index and knowledge base."""
        return self.db_dir / "curated.db"

    @property
    def lock_path(self) -> Path:
        """`db/writer.lock`: the lock one writing command at a time holds (:mod:`cra.lock`)."""
        return self.db_dir / "writer.lock"

    @property
    def loop_lock_path(self) -> Path:
        """`db/loop.lock`: held by the one `cra loop` running in this workspace."""
        return self.db_dir / "loop.lock"

    @property
    def stop_path(self) -> Path:
        """`STOP`: the loop's kill switch; a running loop ends soon after it appears."""
        return self.root / "STOP"

    @property
    def loop_dir(self) -> Path:
        """`loop/`: the loop's final reports."""
        return self.root / "loop"

    def has_packages(self) -> bool:
        """Whether `repos/` holds any package (temporary folders of a pack or import aside)."""
        if not self.repos_dir.is_dir():
            return False
        return any(p.is_dir() and not p.name.startswith(".") for p in self.repos_dir.iterdir())

    def raw_db(self) -> sqlite3.Connection:
        """Open `raw.db`, creating or upgrading its schema.

        Once the workspace has packages, an existing but empty `raw.db` is an error
        (DatabaseError), never silently a new database; so is one that is not SQLite.
        """
        return open_raw(
            self.raw_db_path,
            busy_timeout_ms=self.config.settings.db.busy_timeout_ms,
            expect_data=self.has_packages(),
        )

    def curated_db(self) -> sqlite3.Connection:
        """Open `curated.db`, creating or upgrading its schema."""
        return open_curated(
            self.curated_db_path, busy_timeout_ms=self.config.settings.db.busy_timeout_ms
        )


def open_workspace(explicit: Path | None = None) -> Workspace:
    """Resolve and open an existing workspace; raise WorkspaceError if there is none."""
    root = resolve_root(explicit)
    if not root.exists():
        raise WorkspaceError(
            f"workspace {root} does not exist",
            path=root,
            hint=f"create it with `cra init {root}`, or point --workspace/{ENV_VAR} elsewhere",
        )
    if not root.is_dir():
        raise WorkspaceError(f"workspace {root} is not a directory", path=root)
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise WorkspaceError(
            f"{root} is not a cra workspace (no {CONFIG_NAME})",
            path=root,
            hint=f"run `cra init {root}` to make it one",
        )
    return Workspace(root, load_config(config_path))


@dataclass(frozen=True)
class InitReport:
    """What `cra init` did: the workspace, and the paths it created (empty on a re-run)."""

    workspace: Workspace
    created: tuple[Path, ...]


def init_workspace(path: Path) -> InitReport:
    """Create (or complete) a workspace at `path`; never overwrites anything that exists."""
    root = Path(path).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} exists and is not a directory", path=root)
    created: list[Path] = []
    if not root.exists():
        root.mkdir(parents=True)
        created.append(root)
    config_path = root / CONFIG_NAME
    if not config_path.exists():
        tmp = config_path.with_suffix(".toml.tmp")
        tmp.write_text(default_config_text(), encoding="utf-8")
        tmp.replace(config_path)
        created.append(config_path)
    for name in FOLDERS:
        folder = root / name
        if not folder.is_dir():
            folder.mkdir()
            created.append(folder)
    workspace = Workspace(root, load_config(config_path))
    for path_, opener in (
        (workspace.raw_db_path, workspace.raw_db),
        (workspace.curated_db_path, workspace.curated_db),
    ):
        existed = path_.exists()
        opener().close()
        if not existed:
            created.append(path_)
    return InitReport(workspace, tuple(created))
