"""`interp train`: retrain a model of the shipped zoo from its recipe."""

from __future__ import annotations

from pathlib import Path

import click

from interp.cli._options import quiet_option


@click.command()
@click.argument("name", required=False)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Checkpoint to write.  [default: trained/NAME.pt]",
)
@click.option("--list", "list_models", is_flag=True, help="List the zoo models and exit.")
@quiet_option
def train(name: str | None, out: Path | None, list_models: bool, quiet: bool) -> None:
    """Retrain a zoo model on CPU, reproducibly, and save it as an interp checkpoint.

    \b
    Example:
      interp train seed_cnn --out /tmp/seed_cnn.pt
    """
    from interp import zoo
    from interp.cli._common import progress

    if list_models:
        for entry in zoo.ZOO.values():
            click.echo(f"{entry.name:<12}{entry.summary}")
        return
    if name is None:
        raise click.UsageError("give a model NAME (see `interp train --list`)")
    zoo.get(name)  # unknown name: one line listing the valid ones, exit 2
    path = out if out is not None else Path("trained") / f"{name}.pt"
    with progress(quiet) as show:
        _, meta = zoo.train(name, out=path, progress=show)
    t = meta["training"]
    click.echo(
        f"wrote {path}: validation accuracy {t['accuracy_val']:.1%} "
        f"after {t['seconds']:.0f} s of training"
    )
