"""`interp inspect`: structure and a verdict from the architecture alone."""

from __future__ import annotations

from pathlib import Path

import click

from interp.cli._options import (
    DataSpec,
    ModelSpec,
    data_options,
    json_option,
    model_argument,
    model_options,
)

# 1D length / 2D side at which a model whose head pools positions away is shown
DEFAULT_LENGTH = {1: 1024, 2: 64}


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


@click.command()
@model_argument
@model_options
@data_options
@json_option
def inspect(
    model_path: Path,
    spec: ModelSpec,
    data: DataSpec,
    as_json: bool,
) -> None:
    """Show each layer's geometry and whether the model can be shift invariant.

    The input shape comes from --input-shape, the checkpoint, or --data.

    \b
    Examples:
      interp inspect trained/seed_cnn.pt
      interp inspect eeg_net.pt --data eeg_test.npz
      interp inspect weights.pt --arch mypkg.nets:small --input-shape 1,512
    """
    from interp.cli._common import echo_json, load_model, memory_limit
    from interp.geometry.core import explain, structure

    model, info, shape = load_model(
        model_path, spec
    )
    x, note = None, None
    data.check()
    if data.path is not None:  # the geometry is read at the data's shape: EEG (N, 22, 1000) as is
        from interp.loading.core import load_data

        x = load_data(data.path, labels=data.labels, input_shape=shape,
                      max_memory=memory_limit(spec),
                      **data.read_options()).x[:2]  # the model checks it, in structure()
    elif shape is None:
        from interp.geometry.infer import AnyLength, infer_input_shape

        try:
            shape = infer_input_shape(model)
        except AnyLength as err:
            n = DEFAULT_LENGTH[err.dims]
            shape = (*err.channels, *(n,) * err.dims)
            note = (f"the head pools positions away, so any input length fits; geometry shown "
                    f"at the default {'length' if err.dims == 1 else 'size'} "
                    f"{'x'.join([str(n)] * err.dims)} (pass --input-shape or --data for yours)")
    geo = structure(model, x, input_shape=shape)
    sentences = explain(geo)
    if as_json:
        echo_json({"model": info.to_dict(), "structure": geo.to_dict(), "verdict": sentences,
                   **({"note": note} if note else {})})
        return
    click.echo(f"{model_path}  ({info.format}, {info.parameters:,} parameters)")
    click.echo(f"input shape {_fmt(geo.input_shape)}  (graph read by {geo.method})")
    if note:
        click.echo(f"note: {note}")
    click.echo("")
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
