"""Printing text that may come from a repository (subjects, paths, tool output)."""

from __future__ import annotations

import click

from cra.text import printable


def echo_safe(message: str, *, err: bool = False) -> None:
    """`click.echo` with control characters escaped (line breaks kept)."""
    click.echo(printable(message, keep_newlines=True), err=err)
