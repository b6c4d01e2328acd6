"""`interp attribute`: attribution maps of one sample across shifts, aligned and compared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from interp.cli._common import (
    InputError,
    echo_json,
    json_option,
    load_model,
    model_options,
    model_path_argument,
)
from interp.attribution.core import METHODS
from interp.shifts import MODES


def _sample(info: Any, model: Any, data_path: Path | None, shape: Any, index: int
            ) -> tuple[Any, int, str]:  # fmt: skip
    """(x (1, C, ...), label, where it came from) for sample ``index``."""
    if index < 0:
        raise InputError(f"`--index` {index} is negative; give a sample number from 0")
    if data_path is not None:
        from interp.loading.core import load_data

        data = load_data(data_path, model=model, input_shape=shape)
        n = int(data.x.shape[0])
        if index >= n:
            raise InputError(
                f"`--index` {index} is out of range: {data_path} holds {n} samples (0..{n - 1})"
            )
        return data.x[index : index + 1], int(data.y[index]), f"{data_path}, sample {index}"
    recipe = getattr(info, "recipe", None)
    if recipe is None:
        raise InputError(
            f"{info.path} carries no dataset recipe, so there is no sample to attribute; "
            "pass `--data FILE` (.npz or .pt with x and y)"
        )
    x, y = recipe.sample(index + 1)  # held out from training; the same index, the same sample
    where = f"held-out sample {index} of the {recipe.generator} recipe"
    return x[index : index + 1], int(y[index]), where


def _default_shifts(spatial: tuple[int, ...]) -> list[Any]:
    """Nine shifts: -L/4..L/4 in 1D, a 3 x 3 grid of +-size/8 in 2D."""
    if len(spatial) == 1:
        step = max(1, spatial[0] // 16)
        return list(range(-4 * step, 4 * step + 1, step))
    dy, dx = (max(1, n // 8) for n in spatial)
    return [(a, b) for a in (-dy, 0, dy) for b in (-dx, 0, dx)]


def _write_png(cmp: Any, out: Path) -> None:
    """Maps (one row per shift) over the similarity curve, written atomically."""
    from matplotlib.figure import Figure

    from interp.plots._style import DPI

    rows = min(len(cmp.shifts), 9) + (1 if cmp.output == "feature map" else 0)
    fig = Figure(figsize=(9.0, 1.7 * rows + 3.2), dpi=DPI, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.7 * rows, 3.2])  # type: ignore[misc]
    cmp.plot_maps(0, fig=top)
    cmp.plot(ax=bottom.subplots())
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _units(value: Any, axis: list[dict[str, Any]] | None) -> str:
    """A shift or offset in positions -> axis units ('-' for None); (dy, dx) pairs per axis."""
    from interp.plots._style import shift_to_units

    if value is None:
        return "-"
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if any(v is None for v in values):
        return "-"
    parts = [
        f"{shift_to_units([v], axis[i] if axis and i < len(axis) else None)[0]:g}"
        for i, v in enumerate(values)
    ]
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


@click.command()
@model_path_argument
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Data file (.npz or .pt with x, y); default: the model's zoo recipe.",
)
@click.option("--index", type=int, required=True, help="Which sample to attribute.")
@click.option(
    "--shifts",
    "spec",
    metavar="SPEC",
    help="Shifts, e.g. -2000:2000:500 or -500,0,500 (default: nine up to a quarter of the input).",
)
@click.option("--shift-mode", type=click.Choice(MODES), default="roll", show_default=True)
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default="integrated_gradients",
    show_default=True,
    help="Captum attribution method.",
)
@click.option("--target", type=int, help="Class to explain (default: the sample's label).")
@click.option(
    "--steps", type=click.IntRange(min=1), help="Integration steps for path methods (default 50)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the figure to this PNG."
)
@model_options
@json_option
def attribute(model_path: Path, data_path: Path | None, index: int, spec: str | None,
              shift_mode: str, method: str, target: int | None, steps: int | None,
              out: Path | None, trust: bool, arch: str | None, input_shape: str | None,
              device: str, as_json: bool) -> None:  # fmt: skip
    """Show how one sample's attribution map moves when the input is shifted."""
    from interp.attribution.core import attribution_across_shifts
    from interp.shifts import parse_shifts
    from interp.geometry.core import structure

    if steps is not None and not METHODS[method].path:
        path = ", ".join(name for name, m in METHODS.items() if m.path)
        raise InputError(f"`--steps` applies to path methods ({path}), not {method!r}")
    model, info, shape = load_model(
        model_path, trust=trust, arch=arch, input_shape=input_shape, device=device
    )
    x, label, source = _sample(info, model, data_path, shape, index)
    geo = structure(model, x)
    shifts = parse_shifts(spec, geo.spatial_dims) if spec else _default_shifts(x.shape[2:])
    options = {"n_steps": steps} if steps is not None else {}
    axis = (getattr(info, "meta", None) or {}).get("axis")
    cmp = attribution_across_shifts(
        model, x, label if target is None else target, shifts, method=method,
        mode=shift_mode, structure=geo, axis=axis, **options,
    )  # fmt: skip
    if out is not None:
        _write_png(cmp, out)
    if as_json:
        echo_json({"model": info.to_dict(), "sample": {"source": source, "index": index,
                   "label": label}, "attribution": cmp.to_dict()})  # fmt: skip
        return
    data = cmp.to_dict()
    click.echo(f"{model_path}: {method} of {source} (label {label}, target {int(cmp.target[0])})")
    unit = (axis[0].get("unit") or "bins") if axis else ("px" if x.dim() == 4 else "bins")
    rows = [(f"shift ({unit})", "pearson", "cosine", f"peak off by ({unit})", "p(target)")]
    for i, s in enumerate(cmp.shifts):
        off = data["peak_displacement"][0][i]
        prob = _fmt(data["target_probability"][0][i])
        pearson, cosine = _fmt(data["pearson"][0][i]), _fmt(data["cosine"][0][i])
        rows.append((_units(s, axis), pearson, cosine, _units(off, axis), prob))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    click.echo("")
    for sentence in cmp.sentences():
        click.echo(click.wrap_text(sentence, width=88))
    if out is not None:
        click.echo(f"\nwrote {out}")
