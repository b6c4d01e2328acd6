"""Figures for the logit decomposition and for why a shifted pattern is missed.

Before and after share one position axis (input units), so a reader sees the
activations land where the true class's weights were shaped by background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from interp.plots._style import (
    ACTIVATION_CMAP,
    ORIGINAL,
    SHIFTED,
    WEIGHT_CMAP,
    class_colour,
    figure_for,
    new_figure,
    record,
)
from interp.plots.connectivity import box, image, label, line, shade_span, xs

if TYPE_CHECKING:
    from interp.readout.decomposition import Decomposition
    from interp.readout.shift_explanation import ShiftExplanation


def plot_decomposition(dec: Decomposition, index: int = 0, *, ax: Axes | None = None,
                       classes: Sequence[str] | None = None) -> Figure:  # fmt: skip
    """Per-position contributions (summed over kernels) of every class for sample ``index``.

    1D: one line per class. 2D: the predicted class's contributions over (y, x).
    """
    g = dec.grid
    fig, ax = figure_for(ax)
    if g.dims == 2:
        k = int(dec.logits[index].argmax())
        image(ax, g, dec.per_position[index, k], WEIGHT_CMAP, signed=True)
        ax.set_title(f"contributions to {_cls(classes, k)} "
                     f"(logit {float(dec.logits[index, k]):.2f})")  # fmt: skip
        return fig
    x = xs(g)
    for k in range(dec.per_position.shape[1]):
        logit = float(dec.logits[index, k])
        line(ax, x, dec.per_position[index, k], color=class_colour(k),
             label=f"{_cls(classes, k)}: logit {logit:.2f}")  # fmt: skip
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel(label(g))
    ax.set_ylabel("contribution to the logit")
    ax.set_title(f"sample {index}: logit = bias + sum of these ({dec.kind} head)")
    ax.legend(fontsize="small")
    return fig


def _cls(classes: Sequence[str] | None, k: int) -> str:
    names = list(classes or [])
    return repr(names[k]) if k < len(names) else f"class {k}"


def plot_shift_explanation(e: ShiftExplanation, ax: Axes | None = None) -> Figure:
    """Weights, activity and contributions before/after a shift, aligned on one axis.

    With ``ax``, only the true class's contributions: before and after (and the winner's)
    as lines in 1D, after the shift as a heatmap in 2D.
    """
    if ax is None:
        return _plot_2d(e) if e.grid.dims == 2 else _plot_1d(e)
    fig, ax = figure_for(ax)
    t = e.true_class
    if e.grid.dims == 2:
        image(ax, e.grid, e.contributions_after[t], WEIGHT_CMAP, True)
        if e.footprint is not None:
            box(ax, e.grid, *e.footprint, "black")
        ax.set_title(f"to {e.classes[t]!r}, shifted {e.shift} "
                     f"({float(e.logits_after[t]):.2f})", fontsize="small")  # fmt: skip
        return fig
    _contributions_1d(ax, e)
    ax.axhline(0, color="black", lw=0.5)
    if e.footprint is not None:
        shade_span(ax, e.grid, e.footprint[0][0], e.footprint[1][0], class_colour(t),
                   f"footprint of {e.classes[t]!r}")  # fmt: skip
    ax.legend(fontsize="small", loc="best")
    ax.set_xlabel(label(e.grid))
    ax.set_title(f"contributions to {e.classes[t]!r}, shift by {e.shift}", fontsize="medium")
    return record(fig, kind="explanation", dims=1,
                  footprint="shaded" if e.footprint is not None else None,
                  winner="dashed line" if e.winner != t else None)  # fmt: skip


def _contributions_1d(ax: Axes, e: ShiftExplanation) -> None:
    """The true class's contributions before and after the shift, and the winner's after."""
    t, x, name = e.true_class, xs(e.grid), repr(e.classes[e.true_class])
    # Colour is the class (as in every figure); the line style says before or after.
    line(ax, x, e.contributions_before[t], color=class_colour(t), ls=":",
         label=f"{name} original ({float(e.logits_before[t]):.2f})")  # fmt: skip
    line(ax, x, e.contributions_after[t], color=class_colour(t),
         label=f"{name} shifted ({float(e.logits_after[t]):.2f})")  # fmt: skip
    if e.winner != t:
        w = e.winner
        line(ax, x, e.contributions_after[w], color=class_colour(w), ls="--",
             label=f"{e.classes[w]!r} shifted ({float(e.logits_after[w]):.2f})")  # fmt: skip
    ax.set_ylabel("contribution\nto the logit")


def _plot_1d(e: ShiftExplanation) -> Figure:
    g, t = e.grid, e.true_class
    name, x = repr(e.classes[t]), xs(g)
    rows = 4 if e.fmap_shift_scores is not None else 3
    fig, axes = new_figure(rows, 1, height=2.2)
    a_w, a_act, a_con = axes[0, 0], axes[1, 0], axes[2, 0]
    for a in (a_act, a_con):
        a.sharex(a_w)
    if e.weight_profile is not None:
        line(a_w, x, e.weight_profile, color=class_colour(t))
        a_w.set_ylabel(f"{name} weights\nsum over kernels")
    else:
        a_w.text(0.5, 0.5, "pooled head: one weight per kernel at every position",
                 ha="center", va="center", transform=a_w.transAxes)  # fmt: skip
    a_act.plot(x, e.activity_before.numpy(), color=ORIGINAL, lw=1, label="original")
    a_act.plot(x, e.activity_after.numpy(), color=SHIFTED, lw=1, label=f"shifted by {e.shift}")
    a_act.set_ylabel("activity above\nbackground")
    _contributions_1d(a_con, e)
    for a in (a_w, a_act, a_con):
        a.axhline(0, color="black", lw=0.5)
        if e.footprint is not None:
            shade_span(a, g, e.footprint[0][0], e.footprint[1][0], class_colour(t),
                       f"footprint of {name}" if a is a_w else None)  # fmt: skip
    for a in (a_w, a_act, a_con):
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize="small", loc="best")
    a_con.set_xlabel(label(g))
    a_w.set_title(f"why the shift by {e.shift} moves {name} off its weights")
    if e.fmap_shift_scores is not None:
        _plot_all_shifts(axes[3, 0], e)
    return record(fig, kind="explanation", dims=1,
                  footprint="shaded" if e.footprint is not None else None,
                  winner="dashed line" if e.winner != t else None,
                  all_shifts=e.fmap_shift_scores is not None)  # fmt: skip


def _plot_all_shifts(ax: Axes, e: ShiftExplanation) -> None:
    """Scores for every circular shift of the original feature map (exact, one FFT)."""
    assert e.fmap_shift_scores is not None
    g, n = e.grid, e.grid.positions[0]
    lags = np.arange(n) - n // 2  # centred: index s % n holds shift s
    order = np.mod(lags, n)
    step = float((g.axis_meta(0) or {}).get("step", 1.0))
    in_units = lags * g.stride[0] * step
    for k, cname in enumerate(e.classes):
        ax.plot(in_units, e.fmap_shift_scores[k].numpy()[order], color=class_colour(k),
                lw=1.5 if k == e.true_class else 0.8, label=repr(cname))  # fmt: skip
    ax.axvline(e.fmap_shift[0] * g.stride[0] * step, color=SHIFTED, ls=":", lw=1)
    ax.set_xlabel(f"circular shift of the feature map ({g.unit()})")
    ax.set_ylabel("logit")
    ax.legend(fontsize="small", ncol=min(len(e.classes), 4), loc="best")


def _plot_2d(e: ShiftExplanation) -> Figure:
    t, w = e.true_class, e.winner
    name = repr(e.classes[t])
    fig, axes = new_figure(3, 2, height=2.4)  # before | after, per row: phone-width
    panels = [
        (axes[0, 0], e.activity_before, ACTIVATION_CMAP, False, "activity, original"),
        (axes[0, 1], e.activity_after, ACTIVATION_CMAP, False, f"activity, shifted {e.shift}"),
        (axes[1, 0], e.contributions_before[t], WEIGHT_CMAP, True,
         f"to {name}, original ({float(e.logits_before[t]):.2f})"),
        (axes[1, 1], e.contributions_after[t], WEIGHT_CMAP, True,
         f"to {name}, shifted ({float(e.logits_after[t]):.2f})"),
        (axes[2, 0], e.weight_profile, WEIGHT_CMAP, True, f"{name} weights (sum over kernels)"),
        (axes[2, 1], e.contributions_after[w], WEIGHT_CMAP, True,
         f"to {e.classes[w]!r}, shifted ({float(e.logits_after[w]):.2f})"),
    ]  # fmt: skip
    for ax, values, cmap, signed, title in panels:
        if values is None:
            ax.axis("off")
            continue
        image(ax, e.grid, values, cmap, signed)
        if e.footprint is not None:
            box(ax, e.grid, *e.footprint, "black" if signed else "white")
        ax.set_title(title, fontsize="small")
    fig.suptitle(f"why the shift by {e.shift} moves {name} off its weights (footprint dashed)")
    return record(fig, kind="explanation", dims=2,
                  footprint="dashed box" if e.footprint is not None else None)  # fmt: skip
