"""Receptive field and stride per layer: where a model's positions go."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from interp.plots._style import figure_for


def plot_geometry(
    names: Sequence[str],
    receptive_field: Sequence[int],
    stride: Sequence[int | None],
    *,
    reads: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Bars of each layer's receptive field and a line of its stride (input positions).

    Args:
        names: layer names, in order.
        receptive_field: the largest per-axis receptive field of each layer.
        stride: the largest per-axis stride (None where it is not uniform).
        reads: the layer the head reads, marked on the axis.
        ax: axes to draw on; a new figure when None.

    Returns:
        the Figure.

    >>> plot_geometry(["0", "1"], [7, 9], [1, 2])   # doctest: +SKIP
    """
    fig, ax = figure_for(ax, width=max(6.0, 0.45 * len(names) + 2), height=3.4)
    idx = np.arange(len(names))
    ax.bar(idx, np.asarray(receptive_field, dtype=float), color="#8fb3d9", label="receptive field")
    s = np.asarray([np.nan if v is None else v for v in stride], dtype=float)
    ax.plot(idx, s, "o-", color="#c0392b", label="stride")
    ax.set_yscale("log")
    ax.set_ylabel("input positions")
    ax.set_xticks(idx, list(names), rotation=70, ha="right", fontsize="x-small")
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        if name == reads:
            tick.set_fontweight("bold")
    ax.legend(fontsize="small", loc="upper left")
    title = "receptive field and stride per layer"
    ax.set_title(title + (f" (head reads {reads!r})" if reads else ""), fontsize="small")
    return fig
