"""The `cra.toml` cra writes: each comment sits directly above the key it explains."""

from __future__ import annotations

import tomllib

from cra.config import default_config_text, render_value
from cra.demo import _set_config
from tests.helpers import misplaced_comments


def test_default_config_puts_each_comment_above_its_key() -> None:
    """`cra init`'s cra.toml: every key and section right under its own help comment."""
    text = default_config_text()
    assert misplaced_comments(text) == []
    assert tomllib.loads(text)


def test_demo_settings_change_values_in_place_under_their_comments(workspace) -> None:
    """The demo's edits keep every comment over its key, a missing key gaining its own."""
    config = workspace.root / "cra.toml"
    text = config.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("port = "))
    config.write_text("".join(lines[: at - 1] + lines[at + 1 :]), encoding="utf-8")
    workspace = _set_config(workspace, "model", {"base": render_value("/models/tiny")})
    workspace = _set_config(workspace, "serve", {"port": "8123", "drain_s": "0.5"})
    after = config.read_text(encoding="utf-8")
    assert misplaced_comments(after) == []
    assert workspace.config.settings.model.base == "/models/tiny"
    assert (workspace.config.settings.serve.port, workspace.config.settings.serve.drain_s) == (
        8123,
        0.5,
    )
    assert misplaced_comments(text.replace("\nbase = ", "\nother = 1\nbase = ")) != []
