"""Options and argument parsing shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from cra.errors import NotFound, UsageError
from cra.workspace import Workspace

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


def _known(names: list[str], otherwise: str) -> str:
    return f"known: {', '.join(names)}" if names else otherwise


def require_repo(workspace: Workspace, name: str) -> None:
    """NotFound, naming the known repositories, unless `name` is a package of the
    workspace or a mined repository. Commands call it before anything else."""
    from cra.harness.funnel import funnel

    packages = [p.name for p in workspace.repos_dir.iterdir() if p.is_dir()]
    with closing(workspace.raw_db()) as conn:
        mined = [f.repo for f in funnel(conn, None)]
    known = sorted(set(packages) | set(mined))
    if name not in known:
        raise NotFound(
            f"no repository {name!r}",
            hint=_known(known, "add one with `cra repo pack` or `cra repo import`"),
        )


def require_adapter(workspace: Workspace, name: str) -> None:
    """NotFound, naming the adapters with versions, unless `name` (an adapter name, a
    version suffix `@vN` allowed) has a registered version."""
    from cra.adapters.registry import adapter_names, parse_ref

    bare, _version = parse_ref(name)
    with closing(workspace.raw_db()) as conn:
        known = adapter_names(conn)
    if bare not in known:
        raise NotFound(
            f"no adapter {bare!r}: it has no registered version",
            hint=_known(known, "train one with `cra train`"),
        )


def require_adapter_version(workspace: Workspace, ref: str) -> None:
    """NotFound unless `ref` (NAME@vN) is a registered version: an unknown name names the
    known adapters, an unknown version the versions of the name."""
    from cra.adapters.registry import get_version, parse_versioned

    name, number = parse_versioned(ref)
    require_adapter(workspace, name)
    with closing(workspace.raw_db()) as conn:
        get_version(conn, workspace.root, name, number)


def require_dataset(workspace: Workspace, dataset_id: str) -> None:
    """NotFound, naming the known datasets, unless `dataset_id` is a registered dataset."""
    from cra.datasets_store import get_dataset

    with closing(workspace.raw_db()) as conn:
        get_dataset(conn, workspace.root, dataset_id)
