"""One look for every figure: class colours, colour maps, axis labels with units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are written to files or shown inline, never in a window

from matplotlib.axes import Axes
from matplotlib.figure import Figure

# Okabe-Ito: distinguishable with colour-vision deficiency, consistent across figures.
CLASS_COLOURS = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
)  # fmt: skip
WEIGHT_CMAP = "RdBu_r"  # signed weights and contributions, centred on 0
ACTIVATION_CMAP = "viridis"  # non-negative activations and footprints
SHIFTED = "#D55E00"  # "after the shift" lines
ORIGINAL = "#0072B2"  # "before the shift" lines
TRAINING_SPAN = "#999999"  # shading of the training shift range
DPI = 100


def class_colour(index: int) -> str:
    """Colour of class ``index`` in every figure."""
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def axis_label(axis: Mapping[str, Any] | None, default: str = "position") -> str:
    """Axis title with unit, e.g. 'frequency (Hz)' or 'position (bins)'."""
    if not axis:
        return f"{default} (bins)"
    unit = axis.get("unit") or "bins"
    return f"{axis.get('name', default)} ({unit})"


def shift_label(axis: Mapping[str, Any] | None) -> str:
    """Label for a shift axis, in the input's unit."""
    if not axis:
        return "shift (bins)"
    return f"shift ({axis.get('unit') or 'bins'})"


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


def new_figure(
    nrows: int = 1, ncols: int = 1, *, width: float = 8.0, height: float = 3.2, **kwargs: Any
) -> tuple[Figure, Any]:
    """A Figure (not pyplot-managed) and its axes, sized for a report column."""
    fig = Figure(figsize=(width, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def figure_for(ax: Axes | None, **kwargs: Any) -> tuple[Figure, Axes]:
    """Use ``ax`` if given (return its figure), else make a one-panel figure."""
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig, axes = new_figure(**kwargs)
    return fig, axes[0, 0]


def _show_figures_in_ipython() -> None:
    """In IPython/Jupyter, display a returned Figure as a PNG even if pyplot was never used.

    The inline backend registers this formatter only once pyplot is imported; interp's
    figures do not go through pyplot, so without it ``sw.plot()`` would print a repr.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
    except KeyError:
        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


_show_figures_in_ipython()
