"""Figures only a comparison needs: several models' accuracy versus shift on one plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from interp.plots._style import class_colour, figure_for, new_figure, shift_label, shift_to_units


def _line(sweep: Mapping[str, Any], axis_index: int | None) -> tuple[list[int], list[float]]:
    """Shifts and accuracy along one line: 1D as is, 2D along dy (0) or dx (1) through 0."""
    shifts, acc = sweep["shifts"], sweep["accuracy"]
    if axis_index is None:
        pairs = sorted(zip(shifts, acc, strict=True))
    else:
        other = 1 - axis_index
        pairs = sorted((s[axis_index], a) for s, a in zip(shifts, acc, strict=True)
                       if s[other] == 0)  # fmt: skip
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def plot_compare_accuracy(
    names: Sequence[str],
    sweeps: Sequence[Mapping[str, Any]],
    axis: Sequence[Mapping[str, Any]] | None,
    ax: Axes | None = None,
) -> Figure:
    """Accuracy versus shift, one line per model; dotted lines mark each training range.

    >>> fig = plot_compare_accuracy(["a"], [{"shifts": [-1, 0, 1],
    ...     "accuracy": [0.5, 1.0, 0.5]}], None)
    >>> len(fig.axes)
    1
    """
    two_d = bool(sweeps) and isinstance(sweeps[0]["shifts"][0], (list, tuple))
    panels: list[tuple[Axes, int | None]]
    if two_d and ax is None:
        fig, axes = new_figure(1, 2, height=3.2)
        panels = [(axes[0, 0], 0), (axes[0, 1], 1)]
    else:
        fig, one = figure_for(ax)
        panels = [(one, 0 if two_d else None)]
    for panel, axis_index in panels:
        index = axis_index or 0
        sub = axis[index] if axis and index < len(axis) else None  # this panel's axis metadata
        for i, (name, sweep) in enumerate(zip(names, sweeps, strict=True)):
            shifts, acc = _line(sweep, axis_index)
            xs = shift_to_units(shifts, sub)
            panel.plot(xs, [100 * a for a in acc], color=class_colour(i), lw=1.6, label=name)
            train = sweep.get("train_range")
            if train:
                for edge in shift_to_units(list(train), sub):
                    panel.axvline(edge, color=class_colour(i), ls=":", lw=1)
        label = shift_label(sub)
        if axis_index is not None:
            label = (
                ("dy " if axis_index == 0 else "dx ")
                + label
                + (" (dx = 0)" if axis_index == 0 else " (dy = 0)")
            )
        panel.set_xlabel(label)
        panel.set_ylabel("accuracy (%)")
        panel.set_ylim(-2, 102)
        panel.grid(alpha=0.3)
        panel.legend(loc="lower center", fontsize="small", frameon=False)
    return fig
