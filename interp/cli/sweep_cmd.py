"""`interp sweep`: accuracy and confidence of a model over input shifts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from interp._util import fmt_shift
from interp.cli._options import (
    ModelSpec,
    data_option,
    json_option,
    model_argument,
    model_options,
    quiet_option,
    samples_option,
    seed_option,
    shift_mode_option,
    shifts_option,
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
        units = [(dict(a).get("unit") or "bins") for a in sw.axis] if sw.axis else ["bins", "bins"]
        return ", ".join(
            f"{name} {lo[i]} to {hi[i]} ({ulo[i]:g} to {uhi[i]:g} {units[i]})"
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
@data_option()
@shifts_option()
@shift_mode_option()
@samples_option
@seed_option
@click.option(
    "--engine",
    type=click.Choice(["auto", "fast", "brute"]),
    default="auto",
    show_default=True,
    help="auto: the exact fast engine where it applies.",
)
@model_options
@json_option
@quiet_option
def sweep(
    model_path: Path,
    data_path: Path | None,
    shifts: str | None,
    shift_mode: str,
    samples: int,
    seed: int,
    engine: str,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure accuracy and confidence of MODEL over input shifts.

    \b
    Example:
      interp sweep trained/seed_gap.pt --shifts -100:100:50
    """
    from interp.cli._common import echo_json, get_examples, load_model, show_progress
    from interp.geometry.core import structure
    from interp.shifts import default_shifts, parse_shifts
    from interp.sweep.core import shift_sweep

    model, info, shape = load_model(
        model_path, spec, quiet=quiet
    )
    x, y, entry, source = get_examples(info, model, data_path, shape, samples, seed, "sweep",
                                       quiet)  # fmt: skip
    data_classes = entry.get("classes")
    geo = structure(model, x[:1].to(spec.device))
    shift_list = (
        parse_shifts(shifts, geo.spatial_dims) if shifts else default_shifts(geo.input_shape)
    )
    meta = info.meta if isinstance(info.meta, dict) else {}
    axis = meta.get("axis") if isinstance(meta.get("axis"), list) else None
    if axis is not None and len(axis) != geo.spatial_dims:
        axis = None
    recipe = getattr(info, "recipe", None)
    sw = shift_sweep(
        model,
        x,
        y,
        shift_list,
        mode=shift_mode,
        engine=engine,
        structure=geo,
        axis=axis,
        train_range=getattr(recipe, "train_shift_range", None),
        classes=_classes(
            geo.num_classes, info.classes, data_classes, getattr(recipe, "classes", None)
        ),
        progress=show_progress(quiet),
    )
    if as_json:
        echo_json({"model": info.to_dict(), "data": source, "sweep": sw.to_dict()})
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
    worst = min(range(len(sw.shifts)), key=lambda i: (sw.accuracy[i], i))
    click.echo(f"lowest accuracy: {sw.accuracy[worst]:.1%} at shift {sw.shifts[worst]}")
