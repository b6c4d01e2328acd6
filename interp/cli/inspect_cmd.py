"""`interp inspect`: structure and a verdict from the architecture alone."""

from __future__ import annotations

from pathlib import Path

import click

from interp.cli._options import ModelSpec, json_option, model_argument, model_options


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


@click.command()
@model_argument
@model_options
@json_option
def inspect(
    model_path: Path,
    spec: ModelSpec,
    as_json: bool,
) -> None:
    """Show each layer's geometry and whether the model can be shift invariant.

    \b
    Example:
      interp inspect trained/seed_cnn.pt
    """
    from interp.cli._common import echo_json, load_model
    from interp.geometry.core import explain, structure

    model, info, shape = load_model(
        model_path, spec
    )
    geo = structure(model, input_shape=shape)
    sentences = explain(geo)
    if as_json:
        echo_json({"model": info.to_dict(), "structure": geo.to_dict(), "verdict": sentences})
        return
    click.echo(f"{model_path}  ({info.format}, {info.parameters:,} parameters)")
    click.echo(f"input shape {_fmt(geo.input_shape)}\n")
    rows = [("layer", "type", "output", "receptive field", "stride", "equivariant")]
    for lay in geo.layers:
        eq = {True: "yes", False: "NO", None: "n/a"}[lay.equivariant]
        rows.append(
            (lay.name, lay.type, _fmt(lay.output_shape), _fmt(lay.receptive_field),
             _fmt(lay.stride), eq)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    click.echo("")
    for sentence in sentences:
        click.echo(click.wrap_text(sentence, width=88))
