"""Helpers shared by the curation tests."""

from __future__ import annotations

from cra.workspace import Workspace, init_workspace

TEACHER = "teacher-large"


def with_teacher(workspace: Workspace) -> Workspace:
    """The workspace with the synthetic teacher model named in `[curate]`."""
    config = workspace.root / "cra.toml"
    text = config.read_text().replace("teacher_models = []", f'teacher_models = ["{TEACHER}"]')
    config.write_text(text)
    return init_workspace(workspace.root).workspace
