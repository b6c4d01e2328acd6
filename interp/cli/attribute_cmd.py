"""`interp attribute`: attribution maps of one sample across shifts, aligned and compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from interp._util import fmt_shift
from interp.cli._options import (
    DEFAULT_SHIFTS_RULE,
    AxisSpec,
    DataSpec,
    InputError,
    ModelSpec,
    check_out,
    data_options,
    force_option,
    method_option,
    model_argument,
    out_option,
    run_options,
    samples_option,
    seed_option,
    shift_mode_option,
    shifts_option,
)


def _sample(x: Any, y: Any, index: int, samples: int, where: str) -> tuple[Any, int, str]:
    """(x (1, C, ...), label, where it came from): example ``index`` of the report's draw."""
    n = int(x.shape[0])
    if index < 0 or index >= n:
        more = f"; pass --samples {index + 1} or more to reach it" if index >= samples else ""
        raise InputError(
            f"`--index` {index} is out of range: the examples are numbered 0..{n - 1} "
            f"({where}){more}"
        )
    return x[index : index + 1], int(y[index]), f"example {index} of {where}"


def _write_png(cmp: Any, out: Path, force: bool) -> None:
    """Maps (one row per shift) over the similarity curve, written atomically."""
    import io

    from matplotlib.figure import Figure

    from interp._write import write_file
    from interp.plots._style import DPI

    rows = min(len(cmp.shifts), 9) + (1 if cmp.output == "feature map" else 0)
    fig = Figure(figsize=(9.0, 1.7 * rows + 3.2), dpi=DPI, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.7 * rows, 3.2])  # type: ignore[misc]
    cmp.plot_maps(0, fig=top)
    cmp.plot(ax=bottom.subplots())
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    # interp's one writer (atomic, the user's umask); check_out ran its checks before the
    # work, and this refuses a file that appeared since unless --force.
    write_file(out, buf.getvalue(), force=force, what="the attribution figure")


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


@click.command()
@model_argument
@data_options
@click.option("--index", type=click.IntRange(min=0), required=True,
              help="Which example: the same numbering as `interp report` with the same "
              "--samples and --seed.")  # fmt: skip
@shifts_option("Default: five shifts through 0, from minus to plus the largest of the "
               f"default sweep: {DEFAULT_SHIFTS_RULE}.")  # fmt: skip
@shift_mode_option()
@method_option
@click.option("--target", type=int, help="Class to explain (default: the sample's label).")
@click.option(
    "--steps", type=click.IntRange(min=1), help="Integration steps for path methods (default 50)."
)
@samples_option
@seed_option
@out_option("Write the figure to this PNG.", folder=False)
@force_option
@run_options
def attribute(model_path: Path, data: DataSpec, index: int, shifts: str | None,
              shift_mode: str, method: str, target: int | None, steps: int | None,
              samples: int, seed: int, out: Path | None, force: bool, axis: AxisSpec,
              spec: ModelSpec, as_json: bool, quiet: bool) -> None:  # fmt: skip
    """Show how one sample's attribution map moves when the input is shifted.

    \b
    Examples:
      interp attribute trained/seed_cnn.pt --index 0 --shifts -2000:2000:1000
      interp attribute model.pt --data test.npz --index 3 --method saliency --out maps.png
    """
    if out is not None:
        check_out(out, force=force, folder=False)
    from interp.attribution.core import METHODS, attribution_across_shifts
    from interp.cli._common import echo_json, get_examples, load_model, with_axis
    from interp.geometry.core import structure
    from interp.reporting.choose import attribution_shifts
    from interp.shifts import default_shifts, parse_shifts

    if steps is not None and not METHODS[method].path:
        path = ", ".join(name for name, m in METHODS.items() if m.path)
        raise InputError(f"`--steps` applies to path methods ({path}), not {method!r}")
    model, info, shape = load_model(
        model_path, spec, quiet=quiet
    )
    xs, ys, _, where = get_examples(info, model, data, shape, samples, seed, "attribute",
                                    quiet, spec)  # fmt: skip
    x, label, source = _sample(xs, ys, index, samples, where)
    geo = structure(model, x)
    info = with_axis(info, axis, tuple(geo.input_shape))
    if shifts:
        shift_list = parse_shifts(shifts, geo.spatial_dims)
    else:  # the report's choice when no shift stands out: +-the largest swept, through 0
        shift_list = attribution_shifts(None, default_shifts(geo.input_shape))
    options = {"n_steps": steps} if steps is not None else {}
    axis = (getattr(info, "meta", None) or {}).get("axis")
    cmp = attribution_across_shifts(
        model, x, label if target is None else target, shift_list, method=method,
        mode=shift_mode, structure=geo, axis=axis, **options,
    )  # fmt: skip
    if out is not None:
        _write_png(cmp, out, force)
    if as_json:
        echo_json({"model": info.to_dict(), "sample": {"source": source, "index": index,
                   "label": label}, "attribution": cmp.to_dict()})  # fmt: skip
        return
    data = cmp.to_dict()
    click.echo(f"{model_path}: {method} of {source} (label {label}, target {int(cmp.target[0])})")
    unit = fmt_shift(0 if x.dim() == 3 else (0, 0), axis).rsplit(" ", 1)[1]
    rows = [(f"shift ({unit})", "pearson", "cosine", f"peak off by ({unit})", "p(target)")]
    for i, s in enumerate(cmp.shifts):
        off = data["peak_displacement"][0][i]
        prob = _fmt(data["target_probability"][0][i])
        pearson, cosine = _fmt(data["pearson"][0][i]), _fmt(data["cosine"][0][i])
        rows.append((_number(s, axis), pearson, cosine, _number(off, axis), prob))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    click.echo("")
    for sentence in cmp.sentences():
        click.echo(click.wrap_text(sentence, width=88))
    if out is not None:
        click.echo(f"\nwrote {out}")


def _number(value: Any, axis: Any) -> str:
    """A shift or offset in axis units without the unit ('-' for None): '250', '(2, -1)'."""
    if value is None or (isinstance(value, (list, tuple)) and any(v is None for v in value)):
        return "-"
    text = fmt_shift(tuple(value) if isinstance(value, list) else value, axis, signed=False)
    text = text.rsplit(" ", 1)[0]  # drop the unit
    return text.removeprefix("(dy, dx) = ")
