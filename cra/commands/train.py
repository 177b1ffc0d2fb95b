"""`cra train`: a QLoRA adapter from a curated dataset, registered as a candidate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cra.adapters.names import name_kind
from cra.commands import Context, pass_context
from cra.commands.options import json_option, require_dataset


@click.command("train")
@click.option(
    "--dataset",
    "dataset_id",
    default=None,
    help="Dataset id (training_datasets); a ranker without one trains on the mined history.",
)
@click.option("--adapter", required=True, help="Adapter name: picks meta.adapter rows.")
@click.option(
    "--base",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Base model directory (default: [model] base).",
)
@click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True)
@click.option("--epochs", type=float, default=None, help="Epochs (default: [train] epochs).")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps.")
@click.option("--learning-rate", type=float, default=None, help="Override the learning rate.")
@click.option("--batch-size", type=int, default=None, help="Rows per batch ([train] batch_size).")
@click.option(
    "--backend",
    type=click.Choice(["auto", "peft", "unsloth"]),
    default="auto",
    show_default=True,
    help="auto: unsloth with CUDA, else peft.",
)
@json_option("Print the new version as JSON.")
@pass_context
def train(
    ctx: Context,
    dataset_id: str | None,
    adapter: str,
    base: Path | None,
    method: str,
    epochs: float | None,
    max_steps: int | None,
    learning_rate: float | None,
    batch_size: int | None,
    backend: str,
    as_json: bool,
) -> None:
    """Train the adapter named by --adapter with QLoRA on the rows of the --dataset
    dataset meant for it.

    4-bit NF4 base, LoRA on q, k, v, o, gate, up and down projections (rank and alpha from
    [train]), always from the frozen base. Every sample's completion mask must end with
    <|im_end|>. The result is registered as adapters/NAME/vN (NAME@vN), a candidate, with a
    model card README.md in its folder; Ctrl-C leaves nothing registered.
    """
    if name_kind(adapter) == "ranker":
        _train_ranker(
            ctx, dataset_id, adapter, base, epochs, max_steps, learning_rate, batch_size, as_json
        )
        return
    if dataset_id is None:
        raise click.UsageError(f"--dataset is required to train {adapter}")
    # The dataset is checked first: before the base model, the options or any import.
    require_dataset(ctx.workspace(), dataset_id)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from cra.training.train import TrainOptions, train_adapter

    options = TrainOptions(
        dataset_id=dataset_id,
        adapter=adapter,
        method=method,
        base=base,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        backend=backend,
    )
    workspace = ctx.workspace()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"training {adapter}", total=None)
        result = train_adapter(
            workspace,
            options,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            echo=None if as_json else bar.console.print,
        )
    version = result.version
    m = result.metrics
    if as_json:
        click.echo(json.dumps({**version.as_dict(), "backend": result.backend}, indent=2))
        return
    click.echo(
        f"{version.ref}: {m['steps']} steps, loss {m['first_loss']:.3f} -> {m['last_loss']:.3f}, "
        f"{m['tokens_per_s']} tokens/s ({result.backend})"
    )
    click.echo(f"next: cra adapter eval {version.ref}")


def _train_ranker(
    ctx: Context,
    dataset_id: str | None,
    adapter: str,
    base: Path | None,
    epochs: float | None,
    max_steps: int | None,
    learning_rate: float | None,
    batch_size: int | None,
    as_json: bool,
) -> None:
    """A ranker version: the encoder fine-tuned on the dataset's ranker rows, or on the
    mined history when no dataset is named."""
    if dataset_id is not None:
        require_dataset(ctx.workspace(), dataset_id)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from cra.ranker.train import RankerTrainOptions, train_ranker

    options = RankerTrainOptions(
        adapter=adapter,
        dataset_id=dataset_id,
        base=base,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
    )
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"training {adapter}", total=None)
        result = train_ranker(
            ctx.workspace(),
            options,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            echo=None if as_json else lambda m: click.echo(m, err=True),
        )
    version, m = result.version, result.metrics
    if as_json:
        click.echo(json.dumps(version.as_dict(), indent=2))
        return
    click.echo(
        f"{version.ref}: {m['steps']} steps, loss {m['first_loss']:.3f} -> {m['last_loss']:.3f}, "
        f"{m['seconds']:.1f}s; mix: {m['mix']}"
    )
    click.echo(f"next: cra adapter eval {version.ref}")
