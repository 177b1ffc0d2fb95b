"""`cra serve`: run vLLM for the base model with every active adapter version, stop it,
and show where each stage's requests go."""

from __future__ import annotations

import json
import signal
from contextlib import closing
from typing import cast

import click

from cra.commands import Context, pass_context
from cra.commands.options import json_option


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on (default: [serve] host).")
@click.option("--port", type=int, default=None, help="Port (default: [serve] port).")
@click.option(
    "--python",
    "python",
    default=None,
    help="Interpreter that has vLLM (default: [serve] python, $CRA_VLLM_PYTHON, .venv-vllm).",
)
@click.option(
    "--detach", is_flag=True, help="Return once the server is healthy and leave it running."
)
@click.pass_context
def serve(
    click_ctx: click.Context, host: str | None, port: int | None, python: str | None, detach: bool
) -> None:
    """Serve the base model of `[model] base` with vLLM's OpenAI-compatible API.

    LoRA is on, every active adapter version is loaded as NAME@vN, and versions are
    swapped at runtime when `cra adapter promote` or `rollback` moves the registry. Waits
    until the server is healthy, prints where it listens, then runs until Ctrl-C or
    `cra serve stop` (or returns at once with --detach).
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from cra.serving.server import start_server, stop_server

    ctx = click_ctx.find_object(Context)
    if ctx is None:  # the group always runs under `cra`, which makes the context
        raise click.UsageError("run it as `cra serve`")
    workspace = ctx.workspace()
    started = start_server(workspace, host=host, port=port, python=python, echo=click.echo)
    state, server = started.state, started.server
    click.echo(f"listening on {state.base_url} (pid {state.pid}), log {state.log_path}")
    for name in sorted(state.loaded):
        click.echo(f"  loaded {name}")
    if not state.loaded:
        click.echo("  no active adapter: every stage goes to the base model")
    if detach:
        click.echo("stop it with `cra serve stop`")
        return
    # Both set explicitly: a shell starting `cra serve &` without job control leaves
    # SIGINT ignored, and Ctrl-C or `kill -INT` must still stop the server.
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in stops}
    try:
        server.process.wait()
        click.echo(f"vLLM exited with code {server.process.returncode}")
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_server(workspace)


@serve.command("stop")
@pass_context
def stop(ctx: Context) -> None:
    """Stop the running server."""
    from cra.serving.server import stop_server

    state = stop_server(ctx.workspace())
    click.echo(f"stopped the server at {state.base_url}" if state else "no server is running")


@serve.command("status")
@json_option("Print the status as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """The server's health, its loaded adapters, and where each stage routes now."""
    from cra.llm.routing import route
    from cra.serving.server import served_models
    from cra.serving.state import running_state

    workspace = ctx.workspace()
    state = running_state(workspace.serve_state_path)
    stages = sorted(
        key.split(".", 1)[1] for key in workspace.config.values if key.startswith("stages.")
    )
    with closing(workspace.raw_db()) as conn:
        routes = {
            stage: route(conn, workspace.serve_state_path, workspace.config.settings.stages, stage)
            for stage in stages
        }
    data = {
        "running": state is not None,
        "healthy": bool(state and state.healthy()),
        "url": state.base_url if state else None,
        "pid": state.pid if state else None,
        "base_model": state.base_model if state else None,
        "loaded": served_models(state) if state else [],
        "routes": {s: {"model": r[0], "adapter": r[1], "version": r[2]} for s, r in routes.items()},
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if state is None:
        click.echo("no server is running (start one with `cra serve`)")
        return
    health = "healthy" if data["healthy"] else "NOT healthy"
    click.echo(f"server {data['url']} pid {state.pid}: {health}")
    click.echo(f"base model {state.base_model}")
    click.echo("served: " + ", ".join(cast(list[str], data["loaded"])))  # served_models' ids
    for stage, (model, adapter, version) in routes.items():
        target = f"{adapter}@v{version}" if adapter else f"base model ({model})"
        click.echo(f"  {stage:<14} -> {target}")
