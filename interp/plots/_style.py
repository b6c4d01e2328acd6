"""One look for every figure: class colours, colour maps, axis labels with units."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from interp._util import default_unit

# Okabe-Ito: distinguishable with colour-vision deficiency, consistent across figures.
CLASS_COLOURS = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
)  # fmt: skip
WEIGHT_CMAP = "RdBu_r"  # signed weights and contributions, centred on 0
ACTIVATION_CMAP = "viridis"  # non-negative activations and footprints
# Before/after lines that are not a class: greys, so a colour always means a class.
SHIFTED = "#1b1b1b"  # "after the shift" lines
ORIGINAL = "#8c8c8c"  # "before the shift" lines
TRAINING_SPAN = "#999999"  # shading of the training shift range
DPI = 100
# Sized for a phone as well as a desktop: a report column is 351-366 CSS px wide on a
# 390 px phone (with or without a scrollbar), so a figure WIDTH inches wide shows text of p
# points at p * 351 / (72 * WIDTH) CSS px; with WIDTH 4.8 and no text under MIN_POINTS
# (9 pt) every label is >= 9 CSS px.
WIDTH = 4.8
MIN_POINTS = 9.0


def class_colour(index: int) -> str:
    """Colour of class ``index`` in every figure."""
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def axis_label(axis: Mapping[str, Any] | None, default: str = "position") -> str:
    """Axis title with unit, e.g. 'frequency (Hz)' or 'position (samples)'."""
    if not axis:
        return f"{default} ({default_unit(1)})"
    unit = axis.get("unit") or default_unit(1)
    return f"{axis.get('name', default)} ({unit})"


def shift_label(axis: Mapping[str, Any] | None) -> str:
    """Label for a shift axis, in the input's unit."""
    if not axis:
        return f"shift ({default_unit(1)})"
    return f"shift ({axis.get('unit') or default_unit(1)})"


def to_units(positions: Sequence[float], axis: Mapping[str, Any] | None) -> list[float]:
    """Input positions (indices) -> axis units via ``start + i * step``."""
    if not axis:
        return [float(p) for p in positions]
    start, step = float(axis.get("start", 0.0)), float(axis.get("step", 1.0))
    return [start + float(p) * step for p in positions]


def shift_to_units(shifts: Sequence[float], axis: Mapping[str, Any] | None) -> list[float]:
    """Shifts in positions -> axis units (a shift has no origin, only a step)."""
    step = float(axis.get("step", 1.0)) if axis else 1.0
    return [float(s) * step for s in shifts]


class InlineFigure(Figure):
    """A Figure drawn by Agg without pyplot, that shows itself as a PNG in Jupyter.

    interp never imports pyplot or picks a backend (the user's choice stays theirs),
    so its figures have no canvas manager and IPython's inline backend, which is set
    up only by pyplot, would print a repr. ``_repr_png_`` renders through
    :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` instead, like
    ``IPython.core.pylabtools.print_figure`` (tight bounding box).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)  # attaches itself as self.canvas

    def _repr_png_(self) -> bytes:
        legible(self)
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def record(fig: Figure, **facts: Any) -> Figure:
    """Note on ``fig`` what it draws (line styles, shading, summaries of the plotted arrays).

    Captions are generated from this record (``drawn(fig)``), never from what a figure
    is supposed to show, so a caption cannot name a dashed line the figure does not have.
    """
    notes = dict(getattr(fig, "interp_drawn", {}) or {})
    notes.update(facts)
    fig.interp_drawn = notes  # type: ignore[attr-defined]
    return fig


def drawn(fig: Figure) -> dict[str, Any]:
    """What :func:`record` noted on ``fig`` (empty for a figure interp did not draw)."""
    return dict(getattr(fig, "interp_drawn", {}) or {})


def legible(fig: Figure, min_points: float = MIN_POINTS) -> float:
    """Raise every text of ``fig`` (labels, ticks, legends, titles) to ``min_points``;
    returns the smallest size left (the browser test checks it in CSS px)."""
    from matplotlib.text import Text

    sizes = []
    for text in fig.findobj(Text):
        if text.get_text() and text.get_visible():
            if text.get_fontsize() < min_points:
                text.set_fontsize(min_points)
            sizes.append(float(text.get_fontsize()))
    return min(sizes, default=min_points)


def new_figure(
    nrows: int = 1, ncols: int = 1, *, width: float = WIDTH, height: float = 3.2, **kwargs: Any
) -> tuple[Figure, Any]:
    """A Figure (not pyplot-managed, shown inline in Jupyter) and its axes, sized for a
    report column (at most ``WIDTH`` inches wide: see :data:`WIDTH`)."""
    width = min(width, WIDTH)
    fig = InlineFigure(figsize=(width, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def panel_grid(
    n: int, *, height: float = 2.6, cols: int = 2, **kwargs: Any
) -> tuple[Figure, list[Axes]]:
    """``n`` panels in rows of at most ``cols`` (a phone-width figure); unused ones hidden."""
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = new_figure(rows, cols, height=height, **kwargs)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def figure_for(ax: Axes | None, **kwargs: Any) -> tuple[Figure, Axes]:
    """Use ``ax`` if given (return its figure), else make a one-panel figure."""
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig, axes = new_figure(**kwargs)
    return fig, axes[0, 0]
