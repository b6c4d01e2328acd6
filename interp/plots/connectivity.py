"""Figures for connectivity: weight maps with the training footprint, profiles, kernels.

Every position axis is in input units: feature-map position ``j`` is drawn at
the centre of its receptive field, converted with the axis metadata (Hz, px)
when known. 2D figures with one panel per class make their own figure and
refuse an ``ax``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from interp.plots._style import (
    ACTIVATION_CMAP,
    WEIGHT_CMAP,
    axis_label,
    class_colour,
    figure_for,
    new_figure,
    panel_grid,
    record,
)

if TYPE_CHECKING:
    from interp.readout.core import Connectivity
    from interp.readout.footprints import Footprint
    from interp.readout.grid import Grid


def xs(grid: Grid, dim: int = 0) -> np.ndarray:
    """Input-unit coordinate of every feature-map position along axis ``dim``."""
    n = grid.positions[dim]
    return np.array([grid.to_unit(grid.to_input(j, dim), dim) for j in range(n)])


def extent(grid: Grid, dim: int = 0) -> tuple[float, float]:
    """Edges (half a position beyond the first and last centres) in input units."""
    lo = grid.to_unit(grid.to_input(-0.5, dim), dim)
    hi = grid.to_unit(grid.to_input(grid.positions[dim] - 0.5, dim), dim)
    return lo, hi


def label(grid: Grid, dim: int = 0) -> str:
    """Axis title with unit, e.g. 'frequency (Hz)'."""
    if grid.axis:
        return axis_label(grid.axis_meta(dim))
    return f"input {('position', 'y', 'x')[dim + (grid.dims == 2)]} ({grid.unit(dim)})"


SMOOTH_ABOVE = 400  # positions; longer profiles also get a moving average


def line(ax: Axes, x: np.ndarray, values: torch.Tensor | np.ndarray, **kw: object) -> None:
    """Plot a profile; long ones faintly, with a moving average (P / 200 positions) on top."""
    v = values.double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    if len(v) <= SMOOTH_ABOVE:
        ax.plot(x, v, lw=1, **kw)  # type: ignore[arg-type]
        return
    width = max(len(v) // 200, 2)
    smooth = np.convolve(v, np.ones(width) / width, mode="same")
    faint = {k: val for k, val in kw.items() if k not in ("label", "ls")}
    ax.plot(x, v, lw=0.4, alpha=0.3, **faint)  # type: ignore[arg-type]
    ax.plot(x, smooth, lw=1.2, **kw)  # type: ignore[arg-type]


HATCHES = ("////", "\\\\", "||", "--", "++", "xx", "..", "oo")  # one per class, cycled


def shade_span(ax: Axes, grid: Grid, lo: int, hi: int, colour: str, text: str | None,
               hatch: str | None = None) -> None:  # fmt: skip
    """Shade feature-map positions lo..hi (1D) in input units.

    ``hatch``: the span is also hatched and outlined in ``colour``, so overlapping
    footprints of several classes stay apart instead of merging into grey.
    """
    a = grid.to_unit(grid.to_input(lo - 0.5))
    b = grid.to_unit(grid.to_input(hi + 0.5))
    if hatch is None:
        ax.axvspan(min(a, b), max(a, b), color=colour, alpha=0.12, lw=0, label=text)
        return
    ax.axvspan(min(a, b), max(a, b), facecolor=colour, alpha=0.08, lw=0, label=text)
    ax.axvspan(min(a, b), max(a, b), facecolor="none", edgecolor=colour, hatch=hatch,
               lw=0.8, alpha=0.5)  # fmt: skip


def box(ax: Axes, grid: Grid, lo: tuple[int, ...], hi: tuple[int, ...], colour: str) -> None:
    """Outline feature-map box lo..hi (2D) in input units; imshow has y down."""
    y0, y1 = (grid.to_unit(grid.to_input(v, 0), 0) for v in (lo[0] - 0.5, hi[0] + 0.5))
    x0, x1 = (grid.to_unit(grid.to_input(v, 1), 1) for v in (lo[1] - 0.5, hi[1] + 0.5))
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5, ls="--"))


def image(ax: Axes, grid: Grid, values: torch.Tensor, cmap: str, signed: bool) -> None:
    """(H, W) values over the 2D map in input units, with a colour bar."""
    v = values.detach().double().numpy()
    vmax = float(np.abs(v).max()) or 1.0
    (y0, y1), (x0, x1) = extent(grid, 0), extent(grid, 1)
    im = ax.imshow(v, cmap=cmap, vmin=-vmax if signed else 0.0, vmax=vmax,
                   extent=(x0, x1, y1, y0), interpolation="nearest")  # fmt: skip
    ax.set_xlabel(label(grid, 1))
    ax.set_ylabel(label(grid, 0))
    fig = ax.get_figure()
    assert fig is not None
    fig.colorbar(im, ax=ax, shrink=0.8)


def outline(ax: Axes, mask: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> None:
    """Draw the cell borders around the True cells of a (rows, cols) mask."""
    m = np.pad(mask.astype(bool), 1)  # (R + 2, P + 2), False border
    segments = []
    rows, cols = np.nonzero(m[1:, 1:-1] != m[:-1, 1:-1])  # horizontal edges at y_edges[r]
    segments += [
        [(x_edges[c], y_edges[r]), (x_edges[c + 1], y_edges[r])]
        for r, c in zip(rows, cols, strict=True)
    ]
    rows, cols = np.nonzero(m[1:-1, 1:] != m[1:-1, :-1])  # vertical edges at x_edges[c]
    segments += [
        [(x_edges[c], y_edges[r]), (x_edges[c], y_edges[r + 1])]
        for r, c in zip(rows, cols, strict=True)
    ]
    if segments:
        ax.add_collection(LineCollection(segments, colors="black", linewidths=0.7))


def plot_weight_map(conn: Connectivity, cls: int = 0, *, ax: Axes | None = None) -> Figure:
    """Class ``cls``'s head weights per (kernel, position), training footprint overlaid.

    1D: a kernel x position heatmap; the footprint interval is dashed and the
    (kernel, position) cells the class's data activates are outlined. 2D: the
    weights summed over kernels over (y, x), the footprint as a dashed box.
    """
    if conn.kind == "pooled":
        return plot_pooled_weights(conn, ax=ax)
    g, name = conn.grid, conn.classes[cls]
    c = conn.per_class[cls]
    fp = conn.footprint
    if g.dims == 2:
        fig, ax = figure_for(ax, width=5.0, height=4.2)
        image(ax, g, conn.weight[cls].sum(0), WEIGHT_CMAP, signed=True)
        if c.footprint is not None:
            box(ax, g, *c.footprint, "black")
        ax.set_title(f"class {name!r}: head weights summed over kernels")
        return record(fig, kind="weight_map", dims=2, colours="red positive, blue negative",
                      footprint="dashed box" if c.footprint is not None else None)
    fig, ax = figure_for(ax, height=3.6)
    w = conn.weight[cls].double().numpy()  # (C, P)
    vmax = float(np.abs(w).max()) or 1.0
    lo, hi = extent(g)
    im = ax.imshow(w, aspect="auto", cmap=WEIGHT_CMAP, vmin=-vmax, vmax=vmax,
                   extent=(lo, hi, w.shape[0] - 0.5, -0.5), interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=ax, label="weight")
    if fp is not None and fp.counts[cls] > 0:
        x_edges = np.array([g.to_unit(g.to_input(j - 0.5)) for j in range(w.shape[1] + 1)])
        outline(ax, fp.kernel_mask[cls].numpy(), x_edges, np.arange(w.shape[0] + 1) - 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if c.footprint is not None:
        for v in (c.footprint[0][0] - 0.5, c.footprint[1][0] + 0.5):
            ax.axvline(g.to_unit(g.to_input(v)), color="black", ls="--", lw=1)
    ax.set_xlabel(label(g))
    ax.set_ylabel(f"kernel of layer {conn.reads!r}")
    ax.set_title(f"class {name!r}: head weight per (kernel, position)")
    cells = fp is not None and fp.counts[cls] > 0
    return record(fig, kind="weight_map", dims=1, colours="red positive, blue negative",
                  footprint="dashed lines" if c.footprint is not None else None,
                  cells="outlined" if cells else None)  # fmt: skip


def plot_profiles(conn: Connectivity, *, ax: Axes | None = None) -> Figure:
    """Each class's weights summed over kernels, signed (and absolute), footprints shaded.

    With ``ax`` only the signed profiles are drawn (1D). 2D: one |weight| map per class;
    with ``ax``, one map of |weight| summed over classes, each class's footprint outlined.
    """
    g = conn.grid
    if g.dims == 2 and ax is not None:
        fig, ax = figure_for(ax)
        image(ax, g, conn.profile_abs.sum(0), ACTIVATION_CMAP, signed=False)
        for k, c in enumerate(conn.per_class):
            if c.footprint is not None:
                box(ax, g, c.footprint[0], c.footprint[1], class_colour(k))
        ax.set_title("all classes: sum |weight| (footprints outlined)")
        return record(fig, kind="profiles", dims=2, footprint="dashed boxes")
    if g.dims == 2:
        fig, axes = panel_grid(len(conn.classes), height=2.6)
        for k, a in enumerate(axes):
            image(a, g, conn.profile_abs[k], ACTIVATION_CMAP, signed=False)
            fp_box = conn.per_class[k].footprint
            if fp_box is not None:
                box(a, g, fp_box[0], fp_box[1], "white")
            a.set_title(f"{conn.classes[k]!r}: sum |weight|")
        return record(fig, kind="profiles", dims=2, footprint="dashed boxes")
    if ax is None:
        fig, axes = new_figure(2, 1, sharex=True)
        panels = [(axes[0, 0], conn.profile, "sum of weights"),
                  (axes[1, 0], conn.profile_abs, "sum of |weights|")]  # fmt: skip
    else:
        fig, _ = figure_for(ax)
        panels = [(ax, conn.profile, "sum of weights")]
    x = xs(g)
    for a, values, ylabel in panels:
        for k, name in enumerate(conn.classes):
            colour = class_colour(k)
            line(a, x, values[k], color=colour, label=repr(name))
            fp_box = conn.per_class[k].footprint
            if fp_box is not None:
                shade_span(a, g, fp_box[0][0], fp_box[1][0], colour, None,
                           hatch=HATCHES[k % len(HATCHES)])  # fmt: skip
        a.set_ylabel(f"{ylabel} over kernels")
        a.axhline(0, color="black", lw=0.5)
    shaded = any(c.footprint is not None for c in conn.per_class)
    panels[0][0].legend(loc="upper right", fontsize="small",
                        title="class (footprint shaded)" if shaded else "class")  # fmt: skip
    panels[-1][0].set_xlabel(label(g))
    panels[0][0].set_title(f"head weights per position of layer {conn.reads!r}")
    return record(fig, kind="profiles", dims=1, classes=list(conn.classes),
                  footprint="shaded" if shaded else None,
                  panels=[p[2] for p in panels], **_inside_outside(conn))  # fmt: skip


def _inside_outside(conn: Connectivity) -> dict[str, object]:
    """Of the plotted signed profile (weights summed over kernels): each class's mean
    inside its own footprint, and the range of all classes' values outside theirs."""
    inside: list[float | None] = []
    lo, hi = float("inf"), float("-inf")
    for k, c in enumerate(conn.per_class):
        v = conn.profile[k].double().numpy()  # (P,)
        if c.footprint is None:
            inside.append(None)
            continue
        a, b = c.footprint[0][0], c.footprint[1][0]
        inside.append(float(v[a : b + 1].mean()))
        out = np.concatenate([v[:a], v[b + 1 :]])
        if out.size:
            lo, hi = min(lo, float(out.min())), max(hi, float(out.max()))
    return {"inside_mean": inside,
            "outside_range": [lo, hi] if lo <= hi else None}  # fmt: skip





def plot_pooled_weights(conn: Connectivity, *, ax: Axes | None = None) -> Figure:
    """One weight per (class, kernel), shared by every position: grouped bars."""
    fig, ax = figure_for(ax)
    w = conn.weight.double().numpy()  # (K, C)
    k_n, c_n = w.shape
    width = 0.8 / k_n
    for k in range(k_n):
        ax.bar(np.arange(c_n) + (k - (k_n - 1) / 2) * width, w[k], width,
               color=class_colour(k), label=repr(conn.classes[k]))  # fmt: skip
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel(f"kernel of layer {conn.reads!r}")
    ax.set_ylabel("weight (same at every position)")
    ax.set_title(f"pooled head: one weight per kernel ({conn.pooling or 'pooling'} over positions)")
    ax.legend(fontsize="small", title="class")
    return fig


def plot_kernels(conn: Connectivity, cls: int = 0, top: int = 4) -> Figure:
    """The first-conv kernels class ``cls`` relies on most (its pattern detectors)."""
    c = conn.per_class[cls]
    chosen = list(c.top_kernels[:top])
    fig, axes = panel_grid(max(len(chosen), 1), height=2.2)
    if conn.kernels is None:
        ax = axes[0]
        ax.axis("off")
        ax.text(0.5, 0.5, f"no kernel shapes: {conn.kernels_note}", ha="center", va="center",
                wrap=True, transform=ax.transAxes)  # fmt: skip
        return fig
    for a, k, score in zip(axes, chosen, c.kernel_scores, strict=False):
        kern = conn.kernels[k].sum(0).double().numpy()  # (*k), summed over input channels
        if kern.ndim == 1:
            a.plot(np.arange(len(kern)), kern, color=class_colour(cls))
            a.axhline(0, color="black", lw=0.5)
            a.set_xlabel("tap (input positions)")
        else:
            vmax = float(np.abs(kern).max()) or 1.0
            a.imshow(kern, cmap=WEIGHT_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")
            a.set_xlabel("x (px)")
        a.set_title(f"kernel {k} ({score:+.3g})", fontsize="small")
    axes[0].set_ylabel("conv weight")
    fig.suptitle(f"class {conn.classes[cls]!r}: kernels ranked by {conn.top_kernels_by}")
    return fig


def plot_footprint(fp: Footprint, *, ax: Axes | None = None) -> Figure:
    """Each class's above-background activation profile and its footprint interval (2D: one
    map per class; with ``ax``, every class's footprint box on the summed profile)."""
    g = fp.grid
    if g.dims == 2 and ax is not None:
        fig, ax = figure_for(ax)
        peaks = fp.profile.flatten(1).amax(1).clamp(min=1e-30)  # (K,)
        image(ax, g, (fp.profile / peaks[:, None, None]).sum(0), ACTIVATION_CMAP, signed=False)
        for k in range(len(fp.classes)):
            lo, hi = fp.lo[k], fp.hi[k]
            if lo is not None and hi is not None:
                box(ax, g, lo, hi, class_colour(k))
        ax.set_title("training footprints (profiles / peak, summed over classes)")
        return fig
    if g.dims == 2:
        fig, axes = panel_grid(len(fp.classes), height=2.6)
        for k, a in enumerate(axes):
            image(a, g, fp.profile[k], ACTIVATION_CMAP, signed=False)
            lo, hi = fp.lo[k], fp.hi[k]
            if lo is not None and hi is not None:
                box(a, g, lo, hi, "white")
            a.set_title(f"{fp.classes[k]!r} ({fp.counts[k]} samples)")
        return fig
    fig, ax = figure_for(ax)
    x = xs(g)
    for k, name in enumerate(fp.classes):
        prof = fp.profile[k].double().numpy()
        peak = prof.max() or 1.0
        ax.plot(x, prof / peak, color=class_colour(k), lw=1, label=f"{name!r} ({fp.counts[k]})")
        lo, hi = fp.lo[k], fp.hi[k]
        if lo is not None and hi is not None:
            shade_span(ax, g, lo[0], hi[0], class_colour(k), None)
    ax.set_xlabel(label(g))
    ax.set_ylabel("activation above background\n(summed over kernels, / peak)")
    ax.set_title("training footprint per class (shaded)")
    ax.legend(fontsize="small", title="class (samples)")
    return fig
