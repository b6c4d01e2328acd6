"""Figures for shift sweeps (accuracy versus shift, heatmaps over (dy, dx)) and for
per-layer equivariance. Object API only: each function takes an optional ``ax`` and
returns the Figure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from interp.plots._style import (
    ACTIVATION_CMAP,
    ORIGINAL,
    SHIFTED,
    TRAINING_SPAN,
    class_colour,
    figure_for,
    new_figure,
    panel_grid,
    record,
    shift_label,
    shift_to_units,
)

if TYPE_CHECKING:
    from interp.sweep.core import Sweep
    from interp.sweep.per_layer import Equivariance

_FLOOR = 1e-9  # errors of exactly 0 are drawn here on the log scale


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def _axis(sw: Sweep, i: int) -> dict[str, Any] | None:
    return dict(sw.axis[i]) if sw.axis else None


def _line(sw: Sweep) -> tuple[list[int], int] | None:
    """For 1D, or a 2D sweep along one axis: (order of shifts, axis index); else None."""
    if sw.spatial_dims == 1:
        return sorted(range(len(sw.shifts)), key=lambda i: sw.shifts[i]), 0
    ys = {s[0] for s in sw.shifts}  # type: ignore[index]
    xs = {s[1] for s in sw.shifts}  # type: ignore[index]
    if len(ys) > 1 and len(xs) > 1:
        return None
    axis = 0 if len(ys) > 1 else 1
    return sorted(range(len(sw.shifts)), key=lambda i: sw.shifts[i][axis]), axis  # type: ignore[index]


def _along(s: int | tuple[int, int], axis: int) -> float:
    return float(s if isinstance(s, int) else s[axis])


def _positions(sw: Sweep, order: list[int], axis: int) -> list[float]:
    return shift_to_units([_along(sw.shifts[i], axis) for i in order], _axis(sw, axis))


def _shade(ax: Axes, sw: Sweep, axis: int) -> None:
    if sw.train_range is not None:
        lo, hi = shift_to_units(list(sw.train_range), _axis(sw, axis))
        ax.axvspan(lo, hi, color=TRAINING_SPAN, alpha=0.2, lw=0, label="training shifts")


def _finish_line(ax: Axes, sw: Sweep, axis: int, ylabel: str) -> None:
    ax.set_xlabel(shift_label(_axis(sw, axis)))
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def plot_sweep(sw: Sweep, ax: Axes | None = None) -> Figure:
    """Accuracy and mean true-class probability versus shift; 2D grids as heatmaps
    (both panels without ``ax``, accuracy only with one)."""
    line = _line(sw)
    if line is None:
        if ax is not None:
            return _heatmap(ax, sw, sw.accuracy, "accuracy")
        fig, axes = new_figure(2, 1, height=2.8)
        _heatmap(axes[0, 0], sw, sw.accuracy, "accuracy")
        _heatmap(axes[1, 0], sw, sw.mean_true_probability, "mean true-class probability")
        return record(fig, kind="sweep", dims=2,
                      train_range="dashed box" if sw.train_range is not None else None)
    order, axis = line
    fig, ax = figure_for(ax)
    x = _positions(sw, order, axis)
    _shade(ax, sw, axis)
    # Accuracy and probability often coincide: a thick solid line with open circles under a
    # thin dashed one with crosses keeps them apart.
    every = max(1, len(order) // 25)
    ax.plot(x, [sw.accuracy[i] for i in order], color=ORIGINAL, marker="o", mfc="none", ms=5,
            lw=2.2, markevery=every, label="accuracy")  # fmt: skip
    ax.plot(x, [sw.mean_true_probability[i] for i in order], color=SHIFTED, ls="--", lw=1.2,
            marker="x", ms=4, markevery=every, label="mean true-class probability")  # fmt: skip
    if sw.invariance_range is not None:
        lo, hi = sw.invariance_range
        ends = [_along(lo, axis), _along(hi, axis)]
        for k, v in enumerate(shift_to_units(ends, _axis(sw, axis))):
            ax.axvline(v, color="k", ls=":", lw=1, label="invariance range" if k == 0 else None)
    consistency = "" if sw.consistency is None else f", consistency {sw.consistency:.2f}"
    ax.set_title(f"{sw.mode} shifts, {sw.n} samples{consistency}", fontsize="medium")
    _finish_line(ax, sw, axis, "accuracy / probability")
    return record(fig, kind="sweep", dims=1,
                  train_range="shaded" if sw.train_range is not None else None,
                  invariance_range="dotted lines" if sw.invariance_range is not None else None)


def plot_sweep_per_class(sw: Sweep, ax: Axes | None = None) -> Figure:
    """Accuracy of each class versus shift (2D grids: one heatmap per class without
    ``ax``; with ``ax``, accuracy against the ring max(|dy|, |dx|))."""
    line = _line(sw)
    present = [c for c, n in enumerate(sw.class_counts) if n > 0]
    if line is None and ax is None:
        fig, axes = panel_grid(len(present), height=2.6)
        for panel, c in zip(axes, present, strict=True):
            values = [_nan(v) for v in sw.per_class_accuracy[c]]
            _heatmap(panel, sw, values, f"{sw.classes[c]} accuracy")
        return fig
    fig, ax = figure_for(ax)
    if line is None:
        rings = [max(abs(s[0]), abs(s[1])) for s in sw.shifts]  # type: ignore[index]
        radii = sorted(set(rings))
        for c in present:
            acc = sw.per_class_accuracy[c]
            mean = [
                np.nanmean([_nan(acc[i]) for i, r in enumerate(rings) if r == rad]) for rad in radii
            ]
            ax.plot(radii, mean, color=class_colour(c), marker=".", label=sw.classes[c])
        ax.set_xlabel("shift ring max(|dy|, |dx|) (positions)")
        ax.set_ylabel("class accuracy")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(loc="best", fontsize="small")
        return fig
    order, axis = line
    x = _positions(sw, order, axis)
    _shade(ax, sw, axis)
    for c in present:
        acc = sw.per_class_accuracy[c]
        ax.plot(
            x,
            [_nan(acc[i]) for i in order],
            color=class_colour(c),
            marker=".",
            label=f"{sw.classes[c]} (n={sw.class_counts[c]})",
        )
    ax.set_title(f"accuracy per class, {sw.mode} shifts", fontsize="medium")
    _finish_line(ax, sw, axis, "class accuracy")
    return fig


def _heatmap(ax: Axes, sw: Sweep, values: Any, title: str) -> Figure:
    """Values over the (dy, dx) grid; cells not swept stay blank."""
    ys = sorted({s[0] for s in sw.shifts})  # type: ignore[index]
    xs = sorted({s[1] for s in sw.shifts})  # type: ignore[index]
    grid = np.full((len(ys), len(xs)), np.nan)
    for s, v in zip(sw.shifts, values, strict=True):
        grid[ys.index(s[0]), xs.index(s[1])] = v  # type: ignore[index]
    uy, ux = shift_to_units(ys, _axis(sw, 0)), shift_to_units(xs, _axis(sw, 1))
    half_y = (uy[1] - uy[0]) / 2 if len(uy) > 1 else 0.5
    half_x = (ux[1] - ux[0]) / 2 if len(ux) > 1 else 0.5
    extent = (ux[0] - half_x, ux[-1] + half_x, uy[-1] + half_y, uy[0] - half_y)
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=ACTIVATION_CMAP,
        vmin=0,
        vmax=1,
        extent=extent,
        aspect="auto",
        interpolation="nearest",
    )
    ax.plot([0], [0], marker="+", color="w", ms=10, mew=2)
    if sw.train_range is not None:
        ly, hy = shift_to_units(list(sw.train_range), _axis(sw, 0))
        lx, hx = shift_to_units(list(sw.train_range), _axis(sw, 1))
        ly, hy, lx, hx = ly - half_y, hy + half_y, lx - half_x, hx + half_x  # cell edges
        ax.add_patch(
            Rectangle(
                (lx, ly), hx - lx, hy - ly, fill=False, ec="w", ls="--", label="training shifts"
            )
        )
    ax.set_xlabel("dx: " + shift_label(_axis(sw, 1)))
    ax.set_ylabel("dy: " + shift_label(_axis(sw, 0)))
    ax.set_title(title, fontsize="medium")
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    fig.colorbar(image, ax=ax, shrink=0.85)
    return fig


def plot_equivariance(eq: Equivariance, ax: Axes | None = None) -> Figure:
    """Per-layer relative errors (interior, aliasing, output invariance) on a log scale,
    with the tolerance and the first break marked."""
    fig, ax = figure_for(ax, height=3.6)
    kinds = (
        ("interior_error", "interior error (multiples of stride)", ORIGINAL),
        ("aliasing_error", "aliasing (other shifts)", SHIFTED),
        ("invariance_error", "output change (no positions)", "#009E73"),
    )
    idx = np.arange(len(eq.layers))
    width = 0.8 / len(kinds)
    for k, (field, label, colour) in enumerate(kinds):
        values = [getattr(lay, field) for lay in eq.layers]
        shown = [max(v, _FLOOR) if v is not None else np.nan for v in values]
        ax.bar(idx + (k - 1) * width, shown, width, color=colour, label=label)
    ax.axhline(eq.tolerance, color="k", ls=":", lw=1, label=f"tolerance {eq.tolerance:g}")
    ax.set_yscale("log")
    ax.set_ylim(_FLOOR / 2, 10)
    ax.set_xticks(idx, [f"{lay.name}\n{lay.type}" for lay in eq.layers], fontsize="small",
                  rotation=90 if len(eq.layers) > 5 else 0)  # fmt: skip
    for tick, lay in zip(ax.get_xticklabels(), eq.layers, strict=True):
        if lay.name == eq.first_break:
            tick.set_color(SHIFTED)
            tick.set_fontweight("bold")
    ax.set_xlabel("layer (first break in bold)" if eq.first_break else "layer")
    ax.set_ylabel(f"relative error (0 drawn at {_FLOOR:g})")
    ax.set_title(f"per-layer equivariance, {eq.mode} shifts, {eq.n} samples", fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")
    return record(fig, kind="equivariance", tolerance="dotted line")
