"""Options and argument parsing shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from cra.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

UNSAFE_HELP = "Run the repository's tests with no sandbox when none is available (unsafe)."


def json_option(help: str = "Print JSON.") -> Callable[[F], F]:
    """`--json`, passed to the command as `as_json`."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def unsafe_option(help: str = UNSAFE_HELP) -> Callable[[F], F]:
    """`--unsafe-no-sandbox`, passed to the command as `unsafe`."""
    return click.option("--unsafe-no-sandbox", "unsafe", is_flag=True, help=help)


def parse_date(text: str | None, option: str) -> datetime | None:
    """Parse YYYY-MM-DD or ISO 8601 (UTC when no zone is given); UsageError otherwise."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a date", hint="use YYYY-MM-DD or an ISO 8601 timestamp"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
