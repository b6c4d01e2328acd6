"""`interp sweep`: accuracy and confidence of a model over input shifts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from interp._util import default_unit, fmt_shift
from interp.cli._options import (
    AxisSpec,
    DataSpec,
    ModelSpec,
    data_options,
    model_argument,
    ray_option,
    run_options,
    seed_option,
    shift_mode_option,
    shifts_option,
    sweep_samples_option,
)

_MAX_ROWS = 41  # longer 1D sweeps print every k-th shift (always 0 and both ends)


def _classes(k: int | None, *candidates: Any) -> list[str] | None:
    for names in candidates:
        if names and k is not None and len(names) == k:
            return [str(c) for c in names]
    return None


def _units(sw: Any, s: Any) -> str:
    return fmt_shift(s, sw.axis, signed=False)


def _range(sw: Any) -> str:
    lo, hi = sw.invariance_range
    ulo, uhi = sw.invariance_range_units
    if isinstance(lo, tuple):  # per axis, along the lines through (0, 0)
        unit = (sw.axis_meta(0) or {}).get("unit") or default_unit(2)
        return ", ".join(
            f"{name} {lo[i]} to {hi[i]} ({ulo[i]:g} to {uhi[i]:g} {unit})"
            for i, name in enumerate(("dy", "dx"))
        )
    return f"{lo} to {hi} ({_units(sw, lo)} to {_units(sw, hi)})"


def _table_1d(sw: Any) -> list[str]:
    order = sorted(range(len(sw.shifts)), key=lambda i: sw.shifts[i])
    shown = order
    if len(order) > _MAX_ROWS:
        step = -(-len(order) // _MAX_ROWS)
        keep = set(order[::step]) | {order[0], order[-1]}
        keep |= {i for i in order if sw.shifts[i] in (0, (0, 0))}
        shown = [i for i in order if i in keep]
    rows = [("shift", "in units", "accuracy", "p(true)")]
    for i in shown:
        s = sw.shifts[i]
        rows.append(
            (str(s), _units(sw, s), f"{sw.accuracy[i]:.1%}", f"{sw.mean_true_probability[i]:.3f}")
        )
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    if len(shown) < len(order):
        lines.append(f"({len(shown)} of {len(order)} shifts shown; --json lists all)")
    return lines


def _table_2d(sw: Any) -> list[str]:
    ys = sorted({s[0] for s in sw.shifts})
    xs = sorted({s[1] for s in sw.shifts})
    if len(ys) == 1 or len(xs) == 1:
        return _table_1d(sw)
    acc = dict(zip(sw.shifts, sw.accuracy, strict=True))
    width = max(4, *(len(str(v)) for v in xs + ys))
    lines = [
        "accuracy (%) by dy (rows) and dx (columns)",
        "dy\\dx".rjust(width) + " " + " ".join(str(dx).rjust(width) for dx in xs),
    ]
    for dy in ys:
        cells = [f"{100 * acc[(dy, dx)]:.0f}" if (dy, dx) in acc else "." for dx in xs]
        lines.append(str(dy).rjust(width) + " " + " ".join(c.rjust(width) for c in cells))
    return lines


@click.command()
@model_argument
@data_options
@shifts_option()
@shift_mode_option()
@sweep_samples_option
@seed_option
@click.option(
    "--engine",
    type=click.Choice(["auto", "fast", "brute"]),
    default="auto",
    show_default=True,
    help="auto: the exact fast engine where it applies.",
)
@ray_option
@run_options
def sweep(
    model_path: Path,
    data: DataSpec,
    shifts: str | None,
    shift_mode: str,
    samples: int | None,
    seed: int,
    engine: str,
    ray_address: str | None,
    axis: AxisSpec,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure accuracy and confidence of MODEL over input shifts.

    Without --data a zoo model sweeps held-out examples drawn from its recipe.

    \b
    Examples:
      interp sweep trained/seed_gap.pt --shifts -100:100:50
      interp sweep model.pt --data test.npz --unit Hz --sample-spacing 0.5
      interp sweep resnet.pt --data val/ --resize 64,64 --shifts 'y:-8:8;x:-8:8'
      interp sweep model.pt --data test.npz --ray          (a local Ray)
    """
    from interp.cli import _common as run
    from interp.geometry.core import structure
    from interp.reporting.choose import lowest
    from interp.shifts import default_shifts, parse_shifts
    from interp.sweep.core import shift_sweep

    run.check_ray(ray_address)
    model, info, shape = run.load_model(model_path, spec, quiet=quiet)
    x, y, entry, source = run.get_examples(info, model, data, shape, samples, seed, "sweep",
                                           quiet, spec)  # fmt: skip
    data_classes = entry.get("classes")
    geo = structure(model, x[:1].to(spec.device))
    shift_list = (
        parse_shifts(shifts, geo.spatial_dims) if shifts else default_shifts(geo.input_shape)
    )
    # flags > the data file's units > the checkpoint's axis (the shape may come from --data)
    axis_meta = run.resolve_axis(info, axis, tuple(geo.input_shape), entry.get("axis"))
    if axis_meta is not None and len(axis_meta) != geo.spatial_dims:
        axis_meta = None
    if axis_meta is not None and len(axis_meta) != geo.spatial_dims:
        axis_meta = None
    recipe = getattr(info, "recipe", None)
    with run.ray_executor(ray_address, model_path, spec, shape) as executor, \
            run.progress(quiet) as show:  # fmt: skip
        sw = shift_sweep(
            model,
            x,
            y,
            shift_list,
            mode=shift_mode,
            engine=engine,
            structure=geo,
            axis=axis_meta,
            train_range=getattr(recipe, "train_shift_range", None),
            classes=_classes(
                geo.num_classes, info.classes, data_classes, getattr(recipe, "classes", None)
            ),
            progress=show,
            executor=executor,
        )
    if as_json:
        run.echo_json({"model": info.to_dict(), "data": source, "sweep": sw.to_dict()})
        return
    click.echo(f"{model_path}: {source}, {sw.mode} shifts ({sw.engine}: {sw.engine_reason})")
    click.echo("")
    for line in _table_2d(sw) if geo.spatial_dims == 2 else _table_1d(sw):
        click.echo(line)
    click.echo("")
    base = sw.unshifted_accuracy
    click.echo(f"unshifted accuracy: {'n/a' if base is None else f'{base:.1%}'}")
    if sw.invariance_range is not None:
        click.echo(
            f"invariance range (accuracy within {100 * sw.tolerance:g} points of shift 0): "
            + _range(sw)
        )
    if sw.consistency is not None:
        click.echo(f"consistency (same class under two different shifts): {sw.consistency:.1%}")
    worst = lowest(sw.accuracy, sw.shifts)  # the report's one tie rule, so both name one shift
    tied = sum(a == sw.accuracy[worst] for a in sw.accuracy)
    rule = f"; {tied} shifts tie, so the smallest in size, then the negative one"
    click.echo(
        f"lowest accuracy: {sw.accuracy[worst]:.1%} at shift {sw.shifts[worst]} "
        f"({_units(sw, sw.shifts[worst])})" + (rule if tied > 1 else "")
    )
