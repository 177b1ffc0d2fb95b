"""Click commands, one module per command group. Each is thin: parse, call, print."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from cra.workspace import Workspace, open_workspace


@dataclass
class Context:
    """What the top-level options decided, handed to every command."""

    workspace_path: Path | None
    debug: bool
    quiet: bool = False
    """`--quiet`: progress and notices on stderr are not shown (errors and warnings are)."""

    def workspace(self) -> Workspace:
        """Resolve and open the workspace this command works on."""
        return open_workspace(self.workspace_path)


pass_context = click.make_pass_decorator(Context)
