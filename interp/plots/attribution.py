"""Figures for attribution maps across shifts (matplotlib object API; each returns a Figure).

- :func:`plot_similarity`: Pearson / cosine of the aligned maps versus shift
  (a heatmap over (dy, dx) for a 2D grid of shifts).
- :func:`plot_maps`: the input with its attribution overlaid, one row per shift
  (1D) or a grid of heatmaps (2D), aligned to the unshifted frame by default.
- :func:`plot_neurons`: layer methods: which (kernel, position) neurons carry the
  decision at each shift, under the class's head weights on the same grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from interp._util import default_unit
from interp.plots._style import (
    ORIGINAL,
    SHIFTED,
    WEIGHT_CMAP,
    axis_label,
    figure_for,
    new_figure,
    shift_label,
    shift_to_units,
    to_units,
)

if TYPE_CHECKING:
    from interp.attribution.core import AttributionComparison

MAX_PANELS = 9  # shifts shown in one maps figure; evenly chosen when there are more


def _axis(c: AttributionComparison, i: int) -> dict[str, Any] | None:
    return c.axis_meta(i)


def _unit(c: AttributionComparison, i: int) -> str:
    return (_axis(c, i) or {}).get("unit") or default_unit(c.inputs.dim() - 2)


def _shift_text(c: AttributionComparison, s: Any) -> str:
    """'shift -1312 Hz', '(dy, dx) = (+2, -3) px': the shift in the input's unit."""
    if isinstance(s, tuple):
        dy = shift_to_units([s[0]], _axis(c, 0))[0]
        dx = shift_to_units([s[1]], _axis(c, 1))[0]
        return f"shift ({dy:+g}, {dx:+g}) {_unit(c, 0)}"
    return f"shift {shift_to_units([s], _axis(c, 0))[0]:+g} {_unit(c, 0)}"


def _name(c: AttributionComparison, sample: int, classes: Sequence[str] | None) -> str:
    """The target of ``sample`` by class name ('tones'), else its index ('class 2')."""
    t = int(c.target[sample])
    names = list(classes or getattr(c, "classes", None) or [])
    return f"'{names[t]}'" if t < len(names) else f"class {t}"


def _r(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def plot_similarity(c: AttributionComparison, ax: Axes | None = None) -> Figure:
    """Mean Pearson and cosine similarity of the aligned maps with the unshifted map."""
    if ax is None:
        fig, ax = figure_for(None)
    else:  # the ax may sit in a SubFigure: draw there, return the Figure
        fig = _root(ax.figure)
    pearson = c.pearson.double().numpy()  # (N, S)
    mean_r = c.similarity.double().numpy()
    mean_c = c.cosine.double().nanmean(0).numpy()
    if isinstance(c.shifts[0], tuple):
        ys = sorted({s[0] for s in c.shifts})
        xs = sorted({s[1] for s in c.shifts})
        if len(ys) * len(xs) == len(c.shifts) and len(ys) > 1 and len(xs) > 1:
            grid = np.full((len(ys), len(xs)), np.nan)
            for s, r in zip(c.shifts, mean_r, strict=True):
                grid[ys.index(s[0]), xs.index(s[1])] = r
            uy, ux = shift_to_units(ys, _axis(c, 0)), shift_to_units(xs, _axis(c, 1))
            img = ax.imshow(grid, cmap=WEIGHT_CMAP, vmin=-1, vmax=1, origin="lower",
                            extent=(ux[0], ux[-1], uy[0], uy[-1]), aspect="auto")  # fmt: skip
            ax.figure.colorbar(img, ax=ax, label="mean Pearson with the unshifted map")
            ax.set_xlabel(shift_label(_axis(c, 1)).replace("shift", "shift x"))
            ax.set_ylabel(shift_label(_axis(c, 0)).replace("shift", "shift y"))
            ax.set_title(f"{c.method}: aligned maps versus the unshifted map")
            return fig
        xpos: list[float] = [float(i) for i in range(len(c.shifts))]
        ax.set_xticks(xpos, [f"({s[0]},{s[1]})" for s in c.shifts], rotation=90)
        ax.set_xlabel(shift_label(_axis(c, 0)).replace("shift", "shift (dy, dx)"))
    else:
        xpos = shift_to_units(c.shifts, _axis(c, 0))
        ax.set_xlabel(shift_label(_axis(c, 0)))
    if pearson.shape[0] > 1:
        for row in pearson:
            ax.plot(xpos, row, color=ORIGINAL, alpha=0.2, linewidth=0.8)
    over = " (mean over samples)" if pearson.shape[0] > 1 else ""
    # Pearson and cosine often coincide: a solid line with open circles under a dashed one
    # with crosses stays readable as two curves.
    ax.plot(xpos, mean_r, color=ORIGINAL, marker="o", mfc="none", ms=7, lw=2.2,
            label=f"Pearson{over}")  # fmt: skip
    ax.plot(xpos, mean_c, color=SHIFTED, linestyle="--", marker="x", ms=5, lw=1.2,
            label=f"cosine{over}")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("similarity to the unshifted map")
    ax.set_title(f"{c.method.replace('_', ' ')}: aligned vs unshifted map ({c.mode} shifts)")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def _chosen(c: AttributionComparison) -> list[int]:
    count = len(c.shifts)
    if count <= MAX_PANELS:
        return list(range(count))
    return sorted({round(v) for v in np.linspace(0, count - 1, MAX_PANELS)})


def _panels(fig: Figure | SubFigure | None, rows: int, cols: int, **kw: Any) -> tuple[Any, Any]:
    if fig is None:
        return new_figure(rows, cols, height=1.6 if cols == 1 else 2.4, **kw)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def _root(fig: Figure | SubFigure) -> Figure:
    """The Figure to return when drawing into a SubFigure of it."""
    root = fig if isinstance(fig, Figure) else fig.figure
    assert isinstance(root, Figure)
    return root


def _signal(c: AttributionComparison, sample: int, i: int, aligned: bool) -> torch.Tensor:
    if aligned:
        return c.inputs[sample]
    from interp.shifts import shift

    return shift(c.inputs[sample : sample + 1], c.shifts[i], c.mode)[0]


def plot_maps(
    c: AttributionComparison,
    sample: int = 0,
    *,
    aligned: bool = True,
    fig: Figure | SubFigure | None = None,
    classes: Sequence[str] | None = None,
) -> Figure:
    """The input with its attribution, one row per shift (1D) or a grid of heatmaps (2D).

    ``classes`` names the target in the title ('tones' rather than class 2).

    ``aligned`` shows every map in the unshifted frame (the input unshifted); else each
    shifted input with its own map. Positions outside the compared overlap are shaded.
    """
    if c.output == "feature map":
        return plot_neurons(c, sample, fig=fig, classes=classes)
    _check_sample(c, sample)
    chosen = _chosen(c)
    maps = (c.aligned if aligned else c.maps)[sample].sum(1)  # (S, *spatial)
    lim = float(maps[chosen].abs().max()) or 1.0
    if c.inputs.dim() == 4:
        return _maps_2d(c, sample, chosen, maps, lim, aligned, fig)
    fig, axes = _panels(fig, len(chosen), 1, sharex=True)
    pos = to_units(range(c.inputs.shape[-1]), _axis(c, 0))
    for row, i in enumerate(chosen):
        ax = axes[row, 0]
        ax.plot(pos, _signal(c, sample, i, aligned).sum(0).numpy(), color="0.45", linewidth=0.8)
        ax.set_yticks([])
        twin = ax.twinx()
        values = maps[i].double().numpy()
        twin.fill_between(pos, values, where=values >= 0, color=SHIFTED, alpha=0.7, linewidth=0)
        twin.fill_between(pos, values, where=values < 0, color=ORIGINAL, alpha=0.7, linewidth=0)
        twin.set_ylim(-lim, lim)
        twin.tick_params(labelsize="x-small")
        if aligned and not bool(c.valid[i].all()):
            ax.fill_between(pos, 0, 1, where=~c.valid[i].numpy(), color="0.85",
                            transform=ax.get_xaxis_transform(), linewidth=0)  # fmt: skip
        ax.set_title(f"{_shift_text(c, c.shifts[i])}: Pearson {_r(float(c.pearson[sample, i]))}"
                     f", p(target) {float(c.target_probability[sample, i]):.2f}",
                     fontsize="small", loc="left")  # fmt: skip
    axes[-1, 0].set_xlabel(axis_label(_axis(c, 0)))
    frame = "aligned to the unshifted input" if aligned else "on each shifted input"
    fig.suptitle(f"{c.method.replace('_', ' ')} (red: for {_name(c, sample, classes)}, blue: "
                 f"against), {frame}", fontsize="medium")  # fmt: skip
    return _root(fig)


def _maps_2d(c, sample, chosen, maps, lim, aligned, fig):
    cols = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = _panels(fig, rows, cols)
    h, w = c.inputs.shape[-2:]
    ys, xs = to_units([0, h - 1], _axis(c, 0)), to_units([0, w - 1], _axis(c, 1))
    extent = (xs[0], xs[1], ys[1], ys[0])
    img = None
    for k, ax in enumerate(axes.flat):
        if k >= len(chosen):
            ax.set_axis_off()
            continue
        i = chosen[k]
        img = ax.imshow(maps[i].double().numpy(), cmap=WEIGHT_CMAP, vmin=-lim, vmax=lim,
                        extent=extent)  # fmt: skip
        ax.contour(_signal(c, sample, i, aligned).sum(0).numpy(), levels=3, colors="black",
                   linewidths=0.5, extent=(xs[0], xs[1], ys[0], ys[1]))  # fmt: skip
        ax.set_title(f"{_shift_text(c, c.shifts[i])}\nPearson {_r(float(c.pearson[sample, i]))}",
                     fontsize="small")  # fmt: skip
        ax.set_xlabel(axis_label(_axis(c, 1), "x"), fontsize="x-small")
        ax.set_ylabel(axis_label(_axis(c, 0), "y"), fontsize="x-small")
    if img is not None:
        fig.colorbar(img, ax=axes, label="attribution", shrink=0.8)
    return _root(fig)


def _check_sample(c: AttributionComparison, sample: int) -> None:
    n = int(c.inputs.shape[0])
    if not 0 <= sample < n:
        raise ValueError(f"`sample` {sample} is out of range for {n} samples")


def plot_neurons(
    c: AttributionComparison, sample: int = 0, *, fig: Figure | SubFigure | None = None,
    classes: Sequence[str] | None = None,
) -> Figure:
    """Layer attribution per (kernel, position) neuron at each shift, under the class weights.

    1D maps are kernel x position images; 2D maps are summed over kernels.
    Positions are in input units (the centre of each neuron's receptive field).
    """
    if c.output != "feature map" or c.geometry is None:
        raise ValueError(
            f"plot_neurons needs a feature-map method (layer_integrated_gradients, "
            f"layer_conductance); this comparison used {c.method!r}: use plot_maps"
        )
    _check_sample(c, sample)
    chosen = _chosen(c)
    panels: list[tuple[str, torch.Tensor, str]] = []
    if c.weights is not None:
        panels.append((f"head weights for {_name(c, sample, classes)}", c.weights[sample], "w"))
    for i in chosen:
        title = f"{_shift_text(c, c.shifts[i])}: total {float(c.total[sample, i]):.3g}"
        panels.append((title, c.maps[sample, i], "a"))
    fig, axes = _panels(fig, len(panels), 1, sharex=True)
    rf, stride, offset = c.geometry
    size = c.maps.shape[3:]
    lo = [-o + (r - 1) / 2 for r, o in zip(rf, offset, strict=True)]
    hi = [a + (n - 1) * s for a, n, s in zip(lo, size, stride, strict=True)]
    lim = float(c.maps[sample, chosen].abs().max()) or 1.0
    for ax, (title, grid, kind) in zip(axes[:, 0], panels, strict=True):
        g = grid.double()
        if g.dim() == 3:  # (C, H, W) -> (H, W)
            g = g.sum(0)
            ys, xs = to_units([lo[0], hi[0]], _axis(c, 0)), to_units([lo[1], hi[1]], _axis(c, 1))
            extent = (xs[0], xs[1], ys[1], ys[0])
            ax.set_ylabel(axis_label(_axis(c, 0), "y"), fontsize="x-small")
        else:
            xs = to_units([lo[0], hi[0]], _axis(c, 0))
            extent = (xs[0], xs[1], g.shape[0] - 0.5, -0.5)
            ax.set_ylabel("kernel", fontsize="x-small")
        vlim = (float(g.abs().max()) or 1.0) if kind == "w" else lim
        img = ax.imshow(g.numpy(), cmap=WEIGHT_CMAP, vmin=-vlim, vmax=vlim, aspect="auto",
                        extent=extent, interpolation="nearest")  # fmt: skip
        fig.colorbar(img, ax=ax, pad=0.01, label="weight" if kind == "w" else "attribution")
        ax.set_title(title, fontsize="small", loc="left")
    axes[-1, 0].set_xlabel(axis_label(_axis(c, len(size) - 1)))
    fig.suptitle(f"{c.method.replace('_', ' ')} on layer {c.layer!r}: neurons carrying "
                 f"{_name(c, sample, classes)} at each shift", fontsize="medium")  # fmt: skip
    return _root(fig)
