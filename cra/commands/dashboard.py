"""`cra dashboard`: the report's views served live on loopback."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option

if TYPE_CHECKING:
    from cra.dashboard.server import DashboardServer


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Serve on a --host that is not loopback (anyone who can reach it sees the data).",
)
@json_option("Print the URL as one JSON line on stdout once it listens.")
@pass_context
def dashboard(ctx: Context, host: str, port: int, allow_remote: bool, as_json: bool) -> None:
    """Serve the report's views, and what the loop, the harness and training are doing now,
    at http://127.0.0.1:PORT/: the page updates itself every two seconds.

    raw.db is read read-only, one short transaction per request; Ctrl-C or SIGTERM stops it.
    """
    from cra.dashboard.server import serve

    def started(server: DashboardServer) -> None:
        if server.remote:
            click.secho(
                f"warning: serving on {host}, not loopback: anyone who can reach it sees "
                "this workspace's data",
                fg="red",
                err=True,
            )
        if as_json:
            click.echo(json.dumps({"url": server.url}), nl=True)
        click.echo(f"serving the dashboard at {server.url} (Ctrl-C stops it)", err=True)

    serve(ctx.workspace(), host=host, port=port, allow_remote=allow_remote, on_start=started)
    click.echo("dashboard stopped", err=True)
